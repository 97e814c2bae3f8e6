"""The results page: every evaluation's files, the page's data and HTML without a browser,
and the page in headless Chromium; one tiny training run serves them all."""

import csv
import html.parser
import importlib.resources
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.evaluation import results_page
from deblur_jax.training import loop
from helpers import make_pair_tree, run_tool, saved_item

GROUPS = {'GOPR0000_00_00': 3, 'GOPR0001_00_00': 1}  # the 4 evaluated images' sequences


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A workdir of configs/mimo.py:tiny trained 4 steps, evaluated at steps 2 and 4 on the first 4
  test pairs (two sequences); the summary of its last evaluation."""
  config = mimo.get_config('tiny')
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
  assert results_page.evaluated_steps(str(workdir)) == [2, 4]
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
  assert record['page_images']['limit'] == results_page.DEFAULT_PAGE_IMAGES


def test_page_data_means_and_gains_against_the_blurred_input(run):
  workdir, _ = run
  record, rows = saved_files(workdir, 4)
  data = results_page.load_page_data(str(workdir), 4)
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
  groups = results_page.load_page_data(str(workdir), 4)['groups']
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
  data = results_page.page_data(record, rows, {})
  assert [r['name'] for r in data['rows']] == ['c.png', 'b.png', 'd.png', 'a.png']
  assert [r['gain'] for r in data['rows']] == [-1.0, 1.0, 1.0, 5.0]
  assert data['groups'] == {} and data['ema'] is None
  assert data['run']['model'] is None  # files from before the run was recorded


def test_the_moving_averages_means_are_shown_beside_the_trained_weights():
  means = {'psnr': 27.0, 'ssim': 0.9, 'input_psnr': 25.0, 'input_ssim': 0.8}
  record = {'step': 1, 'num_images': 1, **means, 'ema': {**means, 'psnr': 28.0, 'mse': 0.01}}
  rows = [{'name': 'a.png', **means}]
  data = results_page.page_data(record, rows, {})
  assert data['ema']['psnr_gain'] == pytest.approx(3.0)
  assert 'Moving average of the weights' in results_page.render_html(data)


def test_curves_come_from_the_runs_event_files(run):
  workdir, _ = run
  curves = {c['title']: {s['tag']: s['points'] for s in c['series']}
            for c in results_page.load_page_data(str(workdir), 4)['curves']}
  loss = curves['Training loss']['train/loss']
  assert [s for s, _ in loss] == [1, 2, 3, 4] and all(v > 0 for _, v in loss)
  assert curves['Learning rate']['train/learning_rate'] == [[s, pytest.approx(1e-3)]
                                                           for s in (1, 2, 3, 4)]
  psnr = curves['Evaluation PSNR (dB)']['eval/psnr']
  assert psnr == [[s, pytest.approx(saved_files(workdir, s)[0]['psnr'], rel=1e-6)]
                  for s in (2, 4)]


def test_long_curves_are_drawn_as_means_of_consecutive_values():
  points = results_page._thin([(s, float(s)) for s in range(1, 1001)], max_points=100)
  assert len(points) == 100
  assert points[0] == [10, pytest.approx(5.5)] and points[-1] == [1000, pytest.approx(995.5)]


def test_the_latest_evaluation_by_default(run):
  assert results_page.load_page_data(str(run[0]))['step'] == 4


def test_a_page_for_a_step_never_evaluated_is_an_input_error(run, tmp_path):
  with pytest.raises(InputError, match=r'No evaluation at step 3 in .*eval; the evaluated '
                                       r'steps are \[2, 4\]\.$') as error:
    results_page.write_page(str(run[0]), 3)
  assert '\n' not in str(error.value)
  with pytest.raises(InputError, match=r'No evaluation results .* in .*--mode=eval'):
    results_page.write_page(str(tmp_path))


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


def test_the_page_inlines_its_templates_found_as_package_resources(run):
  """The skeleton, style and script beside results_page.py are package data (pyproject.toml ships
  them in the wheel), found through importlib.resources wherever the package is installed."""
  page = (run[0] / 'eval' / 'step_4.html').read_text()
  folder = importlib.resources.files('deblur_jax.evaluation') / 'templates'
  names = (results_page.PAGE_TEMPLATE, results_page.STYLE_TEMPLATE, results_page.SCRIPT_TEMPLATE)
  assert sorted(path.name for path in folder.iterdir()) == sorted(names)
  skeleton, style, script = (folder.joinpath(name).read_text(encoding='utf-8') for name in names)
  assert style.count('{') > 50 and style in page
  assert "'use strict';" in script and script in page
  # The page is the skeleton with every $placeholder filled in.
  fixed = [re.escape(part) for part in re.split(r'\$\w+', skeleton)]
  assert len(fixed) > 10 and re.fullmatch('.*?'.join(fixed), page, re.DOTALL)


def test_a_step_without_images_still_has_its_table(run, tmp_path):
  """The files of an evaluation copied without its images, and without the event files."""
  shutil.copytree(run[0] / 'eval', tmp_path / 'eval',
                  ignore=shutil.ignore_patterns('*_images', 'images'))
  page = open(results_page.write_page(str(tmp_path), 2)).read()
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


# ----------------------------------------------------------------------------
# The same page in a headless browser: Debian's Chromium (/usr/bin/chromium,
# /usr/bin/chromedriver) driven by selenium.

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
SCREENSHOT_COPY = '/tmp/results_page_screenshot.png'  # the latest run's, to look at


@pytest.fixture(scope='module')
def page(run):
  """The page of the run's last evaluation (step 4)."""
  return run[0] / 'eval' / 'step_4.html'


class Browser:
  """A headless Chromium, or why there is none (each test then fails saying so)."""

  def __init__(self):
    self.driver, self.missing = None, None
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
      self.missing = (f'{" and ".join(absent)} not found: the browser test drives Debian\'s '
                      'Chromium. Install it as root with `apt-get update && apt-get install -y '
                      'chromium chromium-driver` (.ci/run does).')
      return
    try:
      from selenium import webdriver  # pylint: disable=g-import-not-at-top
    except ImportError:
      self.missing = "selenium is not installed: pip install -e '.[test]'."
      return
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1400,1800'):
      options.add_argument(arg)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    self.driver = webdriver.Chrome(options=options,
                                   service=webdriver.ChromeService(executable_path=CHROMEDRIVER))

  def open(self, page):
    """The driver, showing `page` freshly loaded, its comparison image decoded."""
    if self.missing:
      pytest.fail(self.missing, pytrace=False)
    self.driver.get(page.as_uri())
    self.wait_for_image()
    return self.driver

  def wait_for_image(self):
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
    WebDriverWait(self.driver, 10).until(lambda d: d.execute_script(
        'var img = document.getElementById("view-main");'
        'return img.complete && img.naturalWidth > 0;'))


@pytest.fixture(scope='module')
def browser():
  browser = Browser()
  yield browser
  if browser.driver:
    browser.driver.quit()


def by_id(driver, element_id):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  return driver.find_element(By.ID, element_id)


def css(driver, selector):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  return driver.find_element(By.CSS_SELECTOR, selector)


def column(driver, index):
  """The values of the per-image table's column `index`, top to bottom."""
  return driver.execute_script(
      'var index = arguments[0];'
      'return Array.prototype.map.call(document.getElementById("per-image").tBodies[0].rows,'
      ' function (row) { return row.cells[index].getAttribute("data-value"); });', index)


def test_the_page_loads_without_errors_in_the_console(browser, page):
  driver = browser.open(page)
  assert 'evaluation at step 4' in driver.title
  logs = driver.get_log('browser')
  assert [entry for entry in logs if entry['level'] == 'SEVERE'] == [], logs
  assert driver.execute_script('return document.getElementById("per-image").tBodies[0]'
                               '.rows.length') == 4


def test_clicking_a_heading_sorts_the_table(browser, page):
  driver = browser.open(page)
  gains = [float(v) for v in column(driver, 5)]
  assert gains == sorted(gains)  # worst gain first
  psnr_heading = css(driver, '#per-image th[data-key="psnr"]')
  psnr_heading.click()
  psnr = [float(v) for v in column(driver, 1)]
  assert psnr == sorted(psnr) and psnr_heading.get_attribute('aria-sort') == 'ascending'
  psnr_heading.click()
  assert [float(v) for v in column(driver, 1)] == sorted(psnr, reverse=True)
  css(driver, '#per-image th[data-key="name"]').click()
  names = column(driver, 0)
  assert names == sorted(names)


def test_the_comparison_switches_between_blurred_restored_and_sharp(browser, page):
  driver = browser.open(page)
  main = by_id(driver, 'view-main')
  assert '/step_4_images/' in main.get_attribute('src')
  shots = {}
  for mode, part in (('blur', '_blur_'), ('sharp', '_sharp_'), ('deblurred', '/step_4_images/')):
    css(driver, f'button[data-mode="{mode}"]').click()
    browser.wait_for_image()
    assert part in main.get_attribute('src')
    assert css(driver, f'button[data-mode="{mode}"]').get_attribute('aria-pressed') == 'true'
    shots[mode] = main.screenshot_as_png
  assert len(set(shots.values())) == 3  # three different pictures on the screen
  # Another row of the table shows its own images.
  second = driver.execute_script('return document.getElementById("per-image").tBodies[0]'
                                 '.rows[1]')
  name = second.get_attribute('data-name')
  second.click()
  browser.wait_for_image()
  assert by_id(driver, 'view-caption').text.startswith(name)
  assert 'selected' in second.get_attribute('class')


def widths(driver):
  """[shown, natural] width of the comparison's image, in CSS pixels."""
  return driver.execute_script('var img = document.getElementById("view-main");'
                               'return [img.getBoundingClientRect().width, img.naturalWidth];')


def test_the_split_and_the_zoom_to_full_resolution(browser, page):
  driver = browser.open(page)
  by_id(driver, 'split').click()
  over = by_id(driver, 'view-over')
  assert over.is_displayed() and '_blur_' in over.get_attribute('src')
  assert '/step_4_images/' in by_id(driver, 'view-main').get_attribute('src')
  assert 'inset(0px 50%' in over.value_of_css_property('clip-path')
  shown, natural = widths(driver)
  assert shown > 2 * natural  # the 64-pixel images fitted to the panel
  by_id(driver, 'zoom').click()
  assert widths(driver) == [natural, natural]
  assert by_id(driver, 'zoom').get_attribute('aria-pressed') == 'true'


def test_a_screenshot_of_the_page_is_not_blank(browser, page, tmp_path, capsys):
  driver = browser.open(page)
  path = tmp_path / 'results_page.png'
  assert driver.save_screenshot(str(path))
  shutil.copyfile(path, SCREENSHOT_COPY)
  with capsys.disabled():
    print(f'\nResults page screenshot: {path} (and {SCREENSHOT_COPY})')
  pixels = np.asarray(Image.open(path).convert('RGB'), np.float32)
  assert pixels.shape[0] > 500 and pixels.shape[1] > 1000
  assert pixels.std() > 10
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
