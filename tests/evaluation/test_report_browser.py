"""The results page of a real tiny run in a headless browser: Debian's Chromium
(/usr/bin/chromium, /usr/bin/chromedriver) driven by selenium."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from configs import tiny
from deblur_jax.training import loop
from helpers import make_pair_tree

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
SCREENSHOT_COPY = '/tmp/results_page_screenshot.png'  # the latest run's, to look at


@pytest.fixture(scope='module')
def page(tmp_path_factory):
  """The page of the last evaluation (step 4) of configs/tiny.py trained 4 steps."""
  config = tiny.get_config()
  config.data.dir = str(make_pair_tree(tmp_path_factory.mktemp('pairs') / 'data'))
  config.data.max_eval_images = 4
  config.train.num_train_steps = 4
  config.train.eval_every_steps = 2
  workdir = tmp_path_factory.mktemp('run')
  loop.train_and_evaluate(config, str(workdir))
  return workdir / 'eval' / 'step_4.html'


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
