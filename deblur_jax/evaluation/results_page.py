"""The results page of one evaluation: WORKDIR/eval/step_N.html, beside its files.

  path = results_page.write_page(workdir, step)

`load_page_data` gathers what the page shows from the evaluation's files
(step_N.csv, step_N.json and the comparison images results.PageImages saved)
and the run's TensorBoard event files; `page_data` is its pure part, and
`render_html` turns that dict into one self-contained page: inline CSS, a little
vanilla JavaScript (both, and the page's skeleton, from templates/ beside this
module), inline SVG plots, and the images by relative path, so it opens from
disk without a network.
"""

import csv
import glob
import html
import importlib.resources
import json
import math
import os
import re
import string
import urllib.parse
from typing import Sequence

from deblur_jax.core import files
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import tables

DEFAULT_PAGE_IMAGES = 100  # Images whose comparison a page keeps, the first evaluated.
MAX_CURVE_POINTS = 500  # Longer curves are drawn as means of consecutive logged values.
# The page's plots: (title, ((TensorBoard tag, legend), ...)).
CURVES = (
    ('Training loss', (('train/loss', 'loss'),)),
    ('Learning rate', (('train/learning_rate', 'learning rate'),)),
    ('Evaluation PSNR (dB)', (('eval/psnr', 'restored'), ('eval/input_psnr', 'blurred input'))),
)
_METRICS = ('psnr', 'ssim', 'input_psnr', 'input_ssim')  # The per-image CSV columns shown.


def eval_dir(workdir: str) -> str:
  """Where a run's evaluations write their files."""
  return os.path.join(workdir, 'eval')


def benchmarks_dir(workdir: str, step: int) -> str:
  """Where `deblur_jax.score --workdir` writes the step's paper table (table.md,
  table.tex) and each benchmark's results and scores."""
  return os.path.join(eval_dir(workdir), f'step_{step}_benchmarks')


def page_path(workdir: str, step: int) -> str:
  return os.path.join(eval_dir(workdir), f'step_{step}.html')


def evaluated_steps(workdir: str) -> list[int]:
  """The steps with both results files (step_N.csv and .json) in workdir/eval, ascending."""
  steps = []
  for path in glob.glob(os.path.join(eval_dir(workdir), 'step_*.json')):
    match = re.fullmatch(r'step_(\d+)\.json', os.path.basename(path))
    if match and os.path.isfile(path[:-len('.json')] + '.csv'):
      steps.append(int(match.group(1)))
  return sorted(steps)


def read_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the scalars in workdir's TensorBoard event files; a later
  file (a resumed run) overrides an earlier one's values of the same step."""
  paths = sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*')))
  if not paths:
    return {}
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow; only when needed)
  scalars = {}
  for path in paths:  # names start with the time the writer was created
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.metadata.plugin_data.plugin_name == 'scalars':
            scalars.setdefault(value.tag, {})[int(event.step)] = float(
                tf.make_ndarray(value.tensor))
    except tf.errors.DataLossError:
      pass  # the last record of a file that a running training is still writing
  return scalars


def _means(values: dict, count: int | None) -> dict:
  """The PSNR and SSIM means of `values` against those of the blurred input."""
  return {'count': count, **{k: float(values[k]) for k in _METRICS},
          'psnr_gain': float(values['psnr']) - float(values['input_psnr']),
          'ssim_gain': float(values['ssim']) - float(values['input_ssim'])}


def _thin(points: list[tuple[int, float]], max_points: int = MAX_CURVE_POINTS) -> list:
  """The finite (step, value) `points`, as means of consecutive runs when there are more
  than `max_points` (each at its run's last step)."""
  points = [(int(s), float(v)) for s, v in points if math.isfinite(v)]
  size = math.ceil(len(points) / max_points) if points else 1
  return [[run[-1][0], sum(v for _, v in run) / len(run)]
          for run in (points[i:i + size] for i in range(0, len(points), size))]


def page_data(record: dict, rows: Sequence[dict], scalars: dict, *,
              images: dict | None = None, pages: Sequence[int] = (),
              benchmark_tables: Sequence[str] = ()) -> dict:
  """What the results page of one evaluation shows.

  Args:
    record: the evaluation's summary (step_N.json): 'step', the means, 'groups',
      'num_images', the protocol's fields, and where recorded 'run', 'ema', 'page_images'.
    rows: its per-image rows (step_N.csv): 'name', the metrics (numbers or strings).
    scalars: the run's TensorBoard scalars, {tag: {step: value}}.
    images: {name: {'blur', 'deblurred', 'sharp': path relative to the page}} of the
      images whose comparison was saved.
    pages: the other evaluated steps that have a page, to link to.
    benchmark_tables: the step's paper tables (paths relative to the page), to link to.

  Returns:
    {'step', 'run' (model, parameters, data, protocol), 'overall', 'groups' ({name: means}),
    'ema' (means or None), 'rows' (per image, worst PSNR gain first), 'images' (how many
    were saved), 'curves' (CURVES with their points), 'pages', 'benchmark_tables'}. Means
    hold 'count', the metrics, 'psnr_gain' and 'ssim_gain' (the restored image's minus the
    blurred input's).
  """
  images = images or {}
  table = []
  for row in rows:
    values = {k: float(row[k]) for k in _METRICS}
    table.append({'name': row['name'], **values, 'gain': values['psnr'] - values['input_psnr'],
                  'images': images.get(row['name'])})
  table.sort(key=lambda r: (r['gain'], r['name']))
  groups = {}
  for group, values in record.get('groups', {}).items():
    count = sum(os.path.dirname(r['name']) == group for r in table)  # as ImagePair.group
    groups[group] = _means(values, count or None)
  run = record.get('run', {})
  protocol = (rows[0].get('protocol') if rows else None) or record.get('protocol')
  return {
      'step': int(record['step']),
      'run': {'model': run.get('model'), 'num_params': run.get('num_params'),
              'weights': run.get('weights'), 'data_source': run.get('data_source'),
              'data_dir': run.get('data_dir'), 'eval_split': run.get('eval_split'),
              'protocol': protocol},
      'overall': _means(record, int(record.get('num_images', len(table)))),
      'groups': groups,
      'ema': _means(record['ema'], None) if record.get('ema') else None,
      'rows': table,
      'images': {'saved': sum(r['images'] is not None for r in table), 'evaluated': len(table),
                 'limit': record.get('page_images', {}).get('limit')},
      'curves': [{'title': title,
                  'series': [{'tag': tag, 'label': label,
                              'points': _thin(sorted(scalars.get(tag, {}).items()))}
                             for tag, label in series]}
                 for title, series in CURVES],
      'pages': sorted(pages),
      'benchmark_tables': list(benchmark_tables),
  }


def _is_local(path: str) -> bool:
  """Whether `path` names a file inside the page's folder."""
  return (bool(path) and not os.path.isabs(path) and ':' not in path
          and '..' not in path.replace('\\', '/').split('/'))


def load_page_data(workdir: str, step: int | None = None) -> dict:
  """page_data of the evaluation at `step` (None: the latest) from workdir's files.

  Raises an InputError naming the evaluated steps when `step` was not evaluated.
  """
  folder, steps = eval_dir(workdir), evaluated_steps(workdir)
  if step is None and not steps:
    raise InputError(f'No evaluation results (step_N.csv and .json) in {folder}: train in '
                     f'{workdir}, or evaluate a checkpoint with --mode=eval, first.')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise InputError(f'No evaluation at step {step} in {folder}; the evaluated steps are '
                     f'{steps or "none"}.')
  base = os.path.join(folder, f'step_{step}')
  with open(base + '.json') as f:
    record = {'step': step, **json.load(f)}
  with open(base + '.csv', newline='') as f:
    rows = list(csv.DictReader(f))
  saved = record.get('page_images', {}).get('files', {})
  images = {name: paths for name, paths in saved.items()
            if set(paths) == {'blur', 'deblurred', 'sharp'}
            and all(_is_local(p) and os.path.isfile(os.path.join(folder, p))
                    for p in paths.values())}
  pages = [s for s in steps if s != step and os.path.isfile(page_path(workdir, s))]
  benchmarks = benchmarks_dir(workdir, step)
  benchmark_tables = [os.path.relpath(os.path.join(benchmarks, name), folder)
                      for name in tables.TABLE_FILES
                      if os.path.isfile(os.path.join(benchmarks, name))]
  return page_data(record, rows, read_scalars(workdir), images=images, pages=pages,
                   benchmark_tables=benchmark_tables)


def write_page(workdir: str, step: int | None = None) -> str:
  """Writes the results page of the evaluation at `step` (None: the latest); returns its
  path, workdir/eval/step_N.html."""
  data = load_page_data(workdir, step)
  path = page_path(workdir, data['step'])
  with files.atomic_write(path, 'w') as f:
    f.write(render_html(data))
  return path


# Rendering: the data-driven parts of templates/results_page.html, every value through
# html.escape.

def _e(value) -> str:
  return html.escape(str(value), quote=True)


def _number(value, digits: int, sign: bool = False) -> str:
  return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def _gain_class(gain: float) -> str:
  return 'gain-up' if gain > 0 else 'gain-down' if gain < 0 else ''


def _run_table(data: dict) -> str:
  run, shown = data['run'], data['images']
  missing = '<span class="muted">not recorded</span>'
  params = run['num_params']
  data_parts = [f'source {run["data_source"]}' if run['data_source'] else '',
                run['data_dir'] or '', f'split {run["eval_split"]}' if run['eval_split'] else '']
  data_text = ', '.join(p for p in data_parts if p)
  weights = f' ({run["weights"]} weights)' if run['weights'] else ''
  limit = f' (at most {shown["limit"]} per evaluation)' if shown['limit'] is not None else ''
  entries = [
      ('Model', _e(run['model']) if run['model'] else missing),
      ('Parameters', f'{params:,} ({params / 1e6:.2f} M)' if params is not None else missing),
      ('Checkpoint step', f'{data["step"]:,}{_e(weights)}'),
      ('Data', _e(data_text) if data_text else missing),
      ('Protocol', _e(run['protocol']) if run['protocol'] else missing),
      ('Images', f'{shown["evaluated"]:,} evaluated; comparisons saved for '
                 f'{shown["saved"]:,}{_e(limit)}'),
  ]
  if data['benchmark_tables']:
    links = ', '.join(f'<a href="{urllib.parse.quote(path)}">{_e(os.path.basename(path))}</a>'
                      for path in data['benchmark_tables'])
    entries.append(('Paper table', f'{links} (deblur_jax.score on each benchmark)'))
  if data['pages']:
    links = ', '.join(f'<a href="step_{s}.html">{s:,}</a>' for s in data['pages'])
    entries.append(('Other evaluations', links))
  body = ''.join(f'<tr><th scope="row">{k}</th><td>{v}</td></tr>' for k, v in entries)
  return f'<table class="run">{body}</table>'


def _means_table(data: dict) -> str:
  lines = [('All images', data['overall'])]
  lines += [(f'Group {name}', means) for name, means in data['groups'].items()]
  if data['ema']:
    lines.append(('Moving average of the weights, all images', data['ema']))
  body = ''
  for label, m in lines:
    count = f'{m["count"]:,}' if m['count'] is not None else ''
    body += (f'<tr><th scope="row">{_e(label)}</th><td>{count}</td>'
             f'<td>{_number(m["psnr"], 2)}</td><td>{_number(m["input_psnr"], 2)}</td>'
             f'<td class="{_gain_class(m["psnr_gain"])}">{_number(m["psnr_gain"], 2, True)}</td>'
             f'<td>{_number(m["ssim"], 4)}</td><td>{_number(m["input_ssim"], 4)}</td>'
             f'<td class="{_gain_class(m["ssim_gain"])}">{_number(m["ssim_gain"], 4, True)}'
             '</td></tr>')
  head = ('<tr><th></th><th>Images</th><th>PSNR (dB)</th><th>Input PSNR</th><th>Gain</th>'
          '<th>SSIM</th><th>Input SSIM</th><th>Gain</th></tr>')
  return f'<table class="numbers"><thead>{head}</thead><tbody>{body}</tbody></table>'


# The per-image table's columns: (key, heading, type, digits).
_COLUMNS = (('name', 'Image', 'text', None), ('psnr', 'PSNR (dB)', 'number', 2),
            ('ssim', 'SSIM', 'number', 4), ('input_psnr', 'Input PSNR', 'number', 2),
            ('input_ssim', 'Input SSIM', 'number', 4), ('gain', 'Gain (dB)', 'number', 2))


def _image_table(data: dict) -> str:
  head = ''.join(f'<th scope="col" data-key="{key}" data-type="{kind}" '
                 f'aria-sort="{"ascending" if key == "gain" else "none"}" '
                 f'title="Sort by {_e(title)}">{_e(title)}</th>'
                 for key, title, kind, _ in _COLUMNS)
  body = []
  for row in data['rows']:
    summary = (f'PSNR {row["psnr"]:.2f} dB (input {row["input_psnr"]:.2f}, gain '
               f'{row["gain"]:+.2f}), SSIM {row["ssim"]:.4f} (input {row["input_ssim"]:.4f})')
    cells = []
    for key, _, _, digits in _COLUMNS:
      value = row[key]
      shown = _e(value) if digits is None else _number(value, digits, key == 'gain')
      extra = f' class="{_gain_class(value)}"' if key == 'gain' else ''
      cells.append(f'<td data-value="{_e(value)}"{extra}>{shown}</td>')
    has = ' class="has-images" title="Show in the comparison"' if row['images'] else ''
    body.append(f'<tr data-name="{_e(row["name"])}" data-summary="{_e(summary)}"{has}>'
                f'{"".join(cells)}</tr>')
  return (f'<div class="scroll"><table id="per-image" class="numbers sortable"><thead><tr>'
          f'{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _viewer(data: dict) -> str:
  shown = data['images']
  if not shown['saved']:
    return (f'<p class="notice" id="no-images">Images were not saved for this evaluation (none '
            f'of its {shown["evaluated"]:,} images): the table lists their scores only.</p>')
  limit = f', at most {shown["limit"]:,} per evaluation' if shown['limit'] is not None else ''
  note = (f'Comparisons for {shown["saved"]:,} of the {shown["evaluated"]:,} images (the first '
          f'evaluated{limit}); click a highlighted row of the table to show it.')
  return f'''<div id="viewer">
<div class="controls" role="toolbar" aria-label="Comparison">
<span class="group"><button type="button" data-mode="blur">Blurred <kbd>1</kbd></button
><button type="button" data-mode="deblurred">Restored <kbd>2</kbd></button
><button type="button" data-mode="sharp">Sharp <kbd>3</kbd></button></span>
<label title="Blurred on the left, restored on the right"><input type="checkbox" id="split">
Split <kbd>s</kbd></label>
<input type="range" id="split-at" min="0" max="100" value="50" aria-label="Split position">
<button type="button" id="zoom" aria-pressed="false">Full resolution <kbd>z</kbd></button>
<span class="group"><button type="button" id="prev">Previous <kbd>p</kbd></button
><button type="button" id="next">Next <kbd>n</kbd></button></span>
</div>
<p id="view-caption"></p>
<div id="stage"><div class="frame"><img id="view-main" alt="The selected image"
><img id="view-over" alt="" hidden></div></div>
<p class="muted">{_e(note)}</p>
</div>'''


def _tick(value: float) -> str:
  return f'{value:.4g}'


def _svg_plot(curve: dict, step: int) -> str:
  """An inline SVG line plot of the curve's series against the step, `step` marked."""
  title = _e(curve['title'])
  series = [s for s in curve['series'] if s['points']]
  if not series:
    return (f'<figure class="plot"><figcaption>{title}</figcaption><p class="muted">Not in '
            'this run\'s TensorBoard event files.</p></figure>')
  width, height, left, right, top, bottom = 420, 230, 64, 14, 14, 36
  xs = [p[0] for s in series for p in s['points']] + [step]
  ys = [p[1] for s in series for p in s['points']]
  x0, x1 = min(xs), max(xs)
  if x0 == x1:
    x0, x1 = x0 - 1, x1 + 1
  y0, y1 = min(ys), max(ys)
  pad = (y1 - y0) * 0.06 or abs(y1) * 0.06 or 1.0
  lo, hi = y0 - pad, y1 + pad

  def sx(x):
    return left + (x - x0) / (x1 - x0) * (width - left - right)

  def sy(y):
    return top + (hi - y) / (hi - lo) * (height - top - bottom)

  parts = [f'<rect class="frame" x="{left}" y="{top}" width="{width - left - right}" '
           f'height="{height - top - bottom}"/>']
  for y in sorted({y0, (y0 + y1) / 2, y1}):
    parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" '
                 f'y2="{sy(y):.1f}"/><text class="tick" x="{left - 6}" y="{sy(y) + 4:.1f}" '
                 f'text-anchor="end">{_tick(y)}</text>')
  for x, anchor in ((x0, 'start'), (x1, 'end')):
    parts.append(f'<text class="tick" x="{sx(x):.1f}" y="{height - bottom + 16}" '
                 f'text-anchor="{anchor}">{x:,}</text>')
  parts.append(f'<text class="tick" x="{(left + width - right) / 2:.1f}" '
               f'y="{height - 6}" text-anchor="middle">step</text>')
  parts.append(f'<line class="mark" x1="{sx(step):.1f}" x2="{sx(step):.1f}" y1="{top}" '
               f'y2="{height - bottom}"><title>this evaluation: step {step:,}</title></line>')
  for i, s in enumerate(series):
    points = ' '.join(f'{sx(x):.1f},{sy(y):.1f}' for x, y in s['points'])
    parts.append(f'<polyline class="series s{i}" points="{points}"/>')
    if len(s['points']) <= 40:
      parts += [f'<circle class="series s{i}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3">'
                f'<title>{_e(s["label"])} at step {x:,}: {_tick(y)}</title></circle>'
                for x, y in s['points']]
  legend = ''
  if len(series) > 1:
    legend = ''.join(f' <span class="key k{i}">{_e(s["label"])}</span>'
                     for i, s in enumerate(series))
  return (f'<figure class="plot"><figcaption>{title}{legend}</figcaption><svg viewBox="0 0 {width} '
          f'{height}" width="{width}" height="{height}" role="img" aria-label="{title}">'
          f'{"".join(parts)}</svg></figure>')


def _json_for_script(value) -> str:
  """`value` as JSON that cannot end the <script> element holding it."""
  return json.dumps(value).replace('<', '\\u003c').replace('>', '\\u003e').replace('&',
                                                                                   '\\u0026')


# The page's fixed parts, inlined into every page so that it opens from disk: the skeleton
# (a string.Template of the parts below), its style, and its script (sorting the per-image
# table, and the comparison when images were saved).
PAGE_TEMPLATE, STYLE_TEMPLATE, SCRIPT_TEMPLATE = (
    'results_page.html', 'results_page.css', 'results_page.js')


def _read_template(name: str) -> str:
  """The text of templates/`name`, a package resource so that installed wheels have it."""
  return (importlib.resources.files(__package__) / 'templates' / name).read_text(
      encoding='utf-8')


def render_html(data: dict) -> str:
  """The results page of `data` (page_data's dict) as one self-contained HTML file;
  its images are the relative paths in data['rows'][i]['images']."""
  image_files = {row['name']: {kind: urllib.parse.quote(path) for kind, path in
                               row['images'].items()}
                 for row in data['rows'] if row['images']}
  model = data['run']['model'] or 'deblur_jax'
  return string.Template(_read_template(PAGE_TEMPLATE)).substitute(
      title=_e(f'{model}: evaluation at step {data["step"]:,}'),
      style=_read_template(STYLE_TEMPLATE),
      run=_run_table(data), means=_means_table(data), table=_image_table(data),
      viewer=_viewer(data), plots=''.join(_svg_plot(c, data['step']) for c in data['curves']),
      image_files=_json_for_script(image_files), script=_read_template(SCRIPT_TEMPLATE))
