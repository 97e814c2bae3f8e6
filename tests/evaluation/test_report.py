"""The results page: every evaluation's files, and the page's data and HTML without a browser
(tests/evaluation/test_report_browser.py opens it in Chromium)."""

import csv
import html.parser
import json
import os
import shutil

import jax
import numpy as np
import pytest

from configs import tiny
from deblur_jax.errors import InputError
from deblur_jax.evaluation import report
from deblur_jax.training import loop
from helpers import make_pair_tree, run_tool, saved_item

GROUPS = {'GOPR0000_00_00': 3, 'GOPR0001_00_00': 1}  # the 4 evaluated images' sequences


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A workdir of configs/tiny.py trained 4 steps, evaluated at steps 2 and 4 on the first 4
  test pairs (two sequences); the summary of its last evaluation."""
  config = tiny.get_config()
  config.data.dir = str(make_pair_tree(tmp_path_factory.mktemp('pairs') / 'data'))
  config.data.max_eval_images = 4
  config.train.num_train_steps = 4
  config.train.eval_every_steps = 2
  workdir = tmp_path_factory.mktemp('run')
  return workdir, loop.train_and_evaluate(config, str(workdir))


def saved_files(workdir, step):
  with open(workdir / 'eval' / f'step_{step}.json') as f:
    record = json.load(f)
  with open(workdir / 'eval' / f'step_{step}.csv') as f:
    rows = list(csv.DictReader(f))
  return record, rows


def test_every_evaluation_writes_csv_json_page_and_images(run):
  workdir, summary = run
  assert report.evaluated_steps(str(workdir)) == [2, 4]
  for step in (2, 4):
    assert (workdir / 'eval' / f'step_{step}.html').is_file()
    assert len(list((workdir / 'eval' / f'step_{step}_images').glob('*.png'))) == 4
  # The blurred and sharp images are the same at both steps: saved once.
  assert len(list((workdir / 'eval' / 'images').glob('*.png'))) == 8
  record, rows = saved_files(workdir, 4)
  assert record['psnr'] == pytest.approx(summary['psnr'])
  assert record['psnr'] == pytest.approx(np.mean([float(r['psnr']) for r in rows]), abs=1e-5)
  assert [r['name'] for r in rows] == sorted(r['name'] for r in rows)
  num_params = sum(x.size for x in jax.tree.leaves(saved_item(workdir, 4)['params']))
  assert record['run'].pop('data_dir').endswith('data')
  assert record['run'] == {'model': 'mimo_unet', 'num_params': num_params, 'weights': 'trained',
                           'data_source': 'folders', 'eval_split': 'test'}
  assert set(record['page_images']['files']) == {r['name'] for r in rows}
  assert record['page_images']['limit'] == report.DEFAULT_PAGE_IMAGES


def test_page_data_means_and_gains_against_the_blurred_input(run):
  workdir, _ = run
  record, rows = saved_files(workdir, 4)
  data = report.load_page_data(str(workdir), 4)
  overall = data['overall']
  assert overall['count'] == 4
  assert overall['psnr'] == pytest.approx(record['psnr'])
  assert overall['psnr_gain'] == pytest.approx(record['psnr'] - record['input_psnr'])
  assert overall['ssim_gain'] == pytest.approx(record['ssim'] - record['input_ssim'])
  by_name = {r['name']: r for r in rows}
  for row in data['rows']:
    saved = by_name[row['name']]
    assert row['gain'] == pytest.approx(float(saved['psnr']) - float(saved['input_psnr']))
    assert row['input_ssim'] == pytest.approx(float(saved['input_ssim']))
  assert data['run']['protocol'] == 'mimo' and data['step'] == 4


def test_page_data_groups_are_the_means_of_their_images(run):
  workdir, _ = run
  _, rows = saved_files(workdir, 4)
  groups = report.load_page_data(str(workdir), 4)['groups']
  assert {name: g['count'] for name, g in groups.items()} == GROUPS
  for name, means in groups.items():
    mine = [r for r in rows if r['name'].startswith(name + '/')]
    assert means['psnr'] == pytest.approx(np.mean([float(r['psnr']) for r in mine]), abs=1e-5)
    assert means['psnr_gain'] == pytest.approx(
        np.mean([float(r['psnr']) - float(r['input_psnr']) for r in mine]), abs=1e-5)


def test_rows_come_worst_gain_first():
  rows = [{'name': n, 'psnr': p, 'ssim': 0.9, 'input_psnr': i, 'input_ssim': 0.8}
          for n, p, i in (('a.png', 30.0, 25.0), ('b.png', 26.0, 25.0), ('c.png', 24.0, 25.0),
                          ('d.png', 27.0, 26.0))]
  record = {'step': 1, 'num_images': 4, 'psnr': 26.75, 'ssim': 0.9, 'input_psnr': 25.25,
            'input_ssim': 0.8}
  data = report.page_data(record, rows, {})
  assert [r['name'] for r in data['rows']] == ['c.png', 'b.png', 'd.png', 'a.png']
  assert [r['gain'] for r in data['rows']] == [-1.0, 1.0, 1.0, 5.0]
  assert data['groups'] == {} and data['ema'] is None
  assert data['run']['model'] is None  # files from before the run was recorded


def test_the_moving_averages_means_are_shown_beside_the_trained_weights():
  means = {'psnr': 27.0, 'ssim': 0.9, 'input_psnr': 25.0, 'input_ssim': 0.8}
  record = {'step': 1, 'num_images': 1, **means, 'ema': {**means, 'psnr': 28.0, 'mse': 0.01}}
  rows = [{'name': 'a.png', **means}]
  data = report.page_data(record, rows, {})
  assert data['ema']['psnr_gain'] == pytest.approx(3.0)
  assert 'Moving average of the weights' in report.render_html(data)


def test_curves_come_from_the_runs_event_files(run):
  workdir, _ = run
  curves = {c['title']: {s['tag']: s['points'] for s in c['series']}
            for c in report.load_page_data(str(workdir), 4)['curves']}
  loss = curves['Training loss']['train/loss']
  assert [s for s, _ in loss] == [1, 2, 3, 4] and all(v > 0 for _, v in loss)
  assert curves['Learning rate']['train/learning_rate'] == [[s, pytest.approx(1e-3)]
                                                           for s in (1, 2, 3, 4)]
  psnr = curves['Evaluation PSNR (dB)']['eval/psnr']
  assert psnr == [[s, pytest.approx(saved_files(workdir, s)[0]['psnr'], rel=1e-6)]
                  for s in (2, 4)]


def test_long_curves_are_drawn_as_means_of_consecutive_values():
  points = report._thin([(s, float(s)) for s in range(1, 1001)], max_points=100)
  assert len(points) == 100
  assert points[0] == [10, pytest.approx(5.5)] and points[-1] == [1000, pytest.approx(995.5)]


def test_the_latest_evaluation_by_default(run):
  assert report.load_page_data(str(run[0]))['step'] == 4


def test_a_page_for_a_step_never_evaluated_is_an_input_error(run, tmp_path):
  with pytest.raises(InputError, match=r'No evaluation at step 3 in .*eval; the evaluated '
                                       r'steps are \[2, 4\]\.$') as error:
    report.write_page(str(run[0]), 3)
  assert '\n' not in str(error.value)
  with pytest.raises(InputError, match=r'No evaluation results .* in .*--mode=eval'):
    report.write_page(str(tmp_path))


class References(html.parser.HTMLParser):
  """Every src and href of a page."""

  def __init__(self):
    super().__init__()
    self.found = []

  def handle_starttag(self, tag, attrs):
    self.found += [value for name, value in attrs if name in ('src', 'href')]


def test_the_page_references_only_local_files(run):
  workdir, _ = run
  page = (workdir / 'eval' / 'step_4.html').read_text()
  assert 'http' not in page and '//' not in page.replace('://', '')
  parser = References()
  parser.feed(page)
  assert parser.found == ['data:,', 'step_2.html']  # the favicon (none) and the other page
  image_files = page.split('<script type="application/json" id="image-files">')[1]
  images = json.loads(image_files.split('</script>')[0])
  assert len(images) == 4
  for paths in images.values():
    assert sorted(paths) == ['blur', 'deblurred', 'sharp']
    for path in paths.values():
      assert not os.path.isabs(path) and (workdir / 'eval' / path).is_file()
  assert 'mimo_unet' in page and '4 evaluated; comparisons saved for 4' in page


def test_a_step_without_images_still_has_its_table(run, tmp_path):
  """The files of an evaluation copied without its images, and without the event files."""
  shutil.copytree(run[0] / 'eval', tmp_path / 'eval',
                  ignore=shutil.ignore_patterns('*_images', 'images'))
  page = open(report.write_page(str(tmp_path), 2)).read()
  assert 'Images were not saved for this evaluation' in page
  assert 'id="viewer"' not in page and page.count('<tr data-name=') == 4
  assert page.count("Not in this run's TensorBoard event files") == 3


def test_the_report_command_writes_the_page_and_prints_its_path(run, tmp_path):
  shutil.copytree(run[0], tmp_path / 'work')
  page = tmp_path / 'work' / 'eval' / 'step_2.html'
  page.unlink()
  proc = run_tool('deblur_jax.report', f'--workdir={tmp_path / "work"}', '--step=2')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == str(page) and page.is_file()
