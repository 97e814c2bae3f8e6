"""The metric protocols against BasicSR's and NAFNet's own code, and how evaluation uses them.

tests/fixtures/metrics/reference_metrics.npz holds 4 pairs of 37x45 images (3
noisy, blurred, partly out-of-range outputs; one nearly black) and the numbers
that BasicSR's and NAFNet's functions give for them (make_fixture.py there).
The references compute in float64 and deblur_jax in float32: over these pairs
and a 720x1280 one the differences stay under 4e-6 dB and 6e-7 SSIM, so the
tolerances below, 1e-4 dB and 1e-5, leave room for other float32 hardware but
catch a change of protocol: dropping the rounding moves these numbers by 7e-4 to
1.2e-3 dB and 3e-5 to 8e-5 SSIM, a 1-pixel crop by 0.08 dB and 2e-4 SSIM or more.
"""

import csv
import json

import jax
import numpy as np
import pytest
from PIL import Image

from deblur_jax.configs import mimo
from deblur_jax.core.errors import InputError
from deblur_jax.data import pipeline
from deblur_jax.evaluation import evaluator, metrics, protocols, results
from helpers import FIXTURES, make_pair_tree, write_tiny_checkpoint

PSNR_TOL = 1e-4  # dB
SSIM_TOL = 1e-5


@pytest.fixture(scope='module')
def reference():
  with np.load(FIXTURES / 'metrics' / 'reference_metrics.npz') as f:
    ref = dict(f)
  ref['sharp01'] = ref['sharp'].astype(np.float32) / 255
  return ref


@pytest.mark.parametrize('setting', range(4))
def test_basicsr_equals_basicsr_calculate_psnr_and_ssim(reference, setting):
  crop_border = int(reference['basicsr_crop_border'][setting])
  y_channel = bool(reference['basicsr_y_channel'][setting])
  protocol = protocols.Protocol('basicsr', crop_border, y_channel)
  got = protocol(reference['output'], reference['sharp01'])
  np.testing.assert_allclose(got['psnr'], reference['basicsr_psnr'][setting], rtol=0,
                             atol=PSNR_TOL)
  np.testing.assert_allclose(got['ssim'], reference['basicsr_ssim'][setting], rtol=0,
                             atol=SSIM_TOL)


def test_nafnet_equals_nafnet_calculate_psnr_and_3d_ssim(reference):
  """Also the nearly black output, which NAFNet scores with a peak of 1 (negative PSNR)."""
  got = protocols.Protocol('nafnet')(reference['output'], reference['sharp01'])
  assert float(reference['nafnet_psnr'][3]) < 0
  np.testing.assert_allclose(got['psnr'], reference['nafnet_psnr'], rtol=0, atol=PSNR_TOL)
  np.testing.assert_allclose(got['ssim'], reference['nafnet_ssim'], rtol=0, atol=SSIM_TOL)


@pytest.mark.parametrize('name', ['basicsr', 'nafnet'])
def test_outputs_are_scored_as_saved_in_uint8(reference, name):
  """Scoring the float outputs is scoring the uint8 files BasicSR's tensor2img writes."""
  protocol = protocols.Protocol(name)
  floats = protocol(reference['output'], reference['sharp01'])
  saved = protocol(reference['output_uint8'].astype(np.float32) / 255, reference['sharp01'])
  for k in ('psnr', 'ssim'):
    np.testing.assert_array_equal(floats[k], saved[k])


def test_mimo_is_the_metrics_of_the_clamped_float_output(reference):
  out, sharp = reference['output'], reference['sharp01']
  got = protocols.Protocol('mimo')(out, sharp)
  clamped = np.clip(out, 0, 1)
  np.testing.assert_array_equal(got['psnr'], metrics.psnr(clamped, sharp))
  np.testing.assert_array_equal(got['ssim'], metrics.ssim(clamped, sharp))


def test_basicsr_differs_from_mimo_only_through_rounding(reference):
  out, sharp = reference['output'][:3], reference['sharp01'][:3]
  basicsr, mimo = protocols.Protocol('basicsr'), protocols.Protocol('mimo')
  rounded = reference['output_uint8'][:3].astype(np.float32) / 255
  for k, tol in (('psnr', PSNR_TOL), ('ssim', SSIM_TOL)):
    np.testing.assert_allclose(basicsr(rounded, sharp)[k], mimo(rounded, sharp)[k], rtol=0,
                               atol=tol)
  unrounded, rounded = mimo(out, sharp), basicsr(out, sharp)
  assert np.all(np.abs(rounded['psnr'] - unrounded['psnr']) > 5 * PSNR_TOL)
  assert np.all(np.abs(rounded['ssim'] - unrounded['ssim']) > 3 * SSIM_TOL)


@pytest.mark.parametrize('protocol', [protocols.Protocol('mimo'), protocols.Protocol('nafnet'),
                                      protocols.Protocol('basicsr', 4, True)],
                         ids=lambda p: p.label())
def test_protocols_are_per_image_and_jittable(reference, protocol):
  """Jitted over two images, the second scores as it does alone and not jitted."""
  out, sharp = reference['output'][:2], reference['sharp01'][:2]
  jitted = jax.jit(protocol)(out, sharp)
  alone = protocol(out[1:], sharp[1:])
  for k in ('psnr', 'ssim'):
    assert jitted[k].shape == (2,)
    np.testing.assert_allclose(jitted[k][1], alone[k][0], rtol=1e-6)


@pytest.mark.parametrize('fields, match', [
    (dict(protocol='matlab'), r"Unknown config\.eval\.protocol 'matlab'; choose one of "
                              r"\['basicsr', 'dpdd', 'mimo', 'nafnet', 'realblur', 'rsblur'\]"),
    (dict(protocol='basicsr', crop_border=-1), r'config\.eval\.crop_border=-1 must be >= 0'),
    (dict(protocol='mimo', crop_border=4), r"crop_border=4 is set, but config\.eval\.protocol="
                                           r"'mimo' takes no options"),
    (dict(protocol='nafnet', y_channel=True), r"y_channel=True is set, but config\.eval\."
                                              r"protocol='nafnet' takes no options"),
])
def test_bad_protocol_fields_are_one_line_input_errors(tiny_config, fields, match):
  tiny_config.eval.update(fields)
  with pytest.raises(InputError, match=match) as error:
    protocols.from_config(tiny_config.eval)
  assert '\n' not in str(error.value)


def test_the_evaluator_rejects_a_bad_protocol_before_any_data(tiny_config, tmp_path,
                                                              monkeypatch):
  def no_data(*args, **kwargs):
    raise AssertionError('data was read before the config was checked')
  monkeypatch.setattr(pipeline, 'find_eval_pairs', no_data)
  tiny_config.eval.protocol = 'skimage'
  with pytest.raises(InputError, match=r'config\.eval\.protocol'):
    evaluator.evaluate_checkpoint(tiny_config, str(tmp_path))


def test_a_crop_border_that_leaves_no_ssim_window_is_an_input_error(reference):
  assert protocols.Protocol('basicsr', 13).min_size == 37
  with pytest.raises(InputError, match=r'config\.eval\.crop_border=14 leaves 9x17 pixels of a '
                                       r'37x45 image.*at least 11x11') as error:
    protocols.Protocol('basicsr', 14)(reference['output'], reference['sharp01'])
  assert '\n' not in str(error.value)


def result_rows():
  return [{'name': f'{i}.png', 'group': '', 'psnr': 30.0 + i, 'ssim': 0.9, 'mse': 0.001,
           'input_psnr': 25.0, 'input_ssim': 0.8} for i in range(2)]


@pytest.mark.parametrize('protocol, column', [
    (protocols.Protocol('mimo'), 'mimo'),
    (protocols.Protocol('basicsr', 4, True), 'basicsr crop_border=4 y_channel=True'),
    (protocols.Protocol('nafnet'), 'nafnet'),
])
def test_results_files_name_the_protocol(tmp_path, protocol, column):
  """The JSON's protocol fields and the CSV's 'protocol' column."""
  result = results.EvalResult(result_rows(), [], protocol)
  base = results.write_files(str(tmp_path), 5, result, {'step': 5, **result.summary()})
  with open(base + '.json') as f:
    saved = json.load(f)
  assert {k: saved[k] for k in ('protocol', 'crop_border', 'y_channel')} == protocol.fields()
  assert saved['psnr'] == pytest.approx(30.5)
  with open(base + '.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r.get('protocol') for r in rows] == [column, column]


def y_psnr_of_files(folder, name, crop):
  """BasicSR's Y-channel PSNR of a pair's blurred file against its sharp file, in float64."""
  y = []
  for kind in ('blur', 'sharp'):
    rgb = np.asarray(Image.open(folder / kind / name), np.float64)[crop:-crop, crop:-crop]
    y.append(16 + rgb @ np.array([65.481, 128.553, 24.966]) / 255)
  return 10 * np.log10(255 ** 2 / np.mean((y[0] - y[1]) ** 2))


def test_evaluate_checkpoint_scores_and_records_the_configs_protocol(tmp_path):
  data = make_pair_tree(tmp_path / 'data', splits=('test',), num_sequences=1, per_sequence=2,
                        size=(24, 32))
  write_tiny_checkpoint(tmp_path / 'work', step=1)
  config = mimo.get_config('tiny')
  config.data.dir = str(data)
  config.eval.update(protocol='basicsr', crop_border=2, y_channel=True)
  summary = evaluator.evaluate_checkpoint(config, str(tmp_path / 'work'))
  with open(tmp_path / 'work' / 'eval' / 'step_1.json') as f:
    saved = json.load(f)
  assert {k: saved[k] for k in ('protocol', 'crop_border', 'y_channel')} == {
      'protocol': 'basicsr', 'crop_border': 2, 'y_channel': True}
  assert saved['psnr'] == pytest.approx(summary['psnr'])
  with open(tmp_path / 'work' / 'eval' / 'step_1.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2
  folder = data / 'test' / 'GOPR0000_00_00'
  for row in rows:
    assert row['protocol'] == 'basicsr crop_border=2 y_channel=True'
    name = row['name'].split('/')[-1]
    assert float(row['input_psnr']) == pytest.approx(y_psnr_of_files(folder, name, 2),
                                                     abs=1e-3)
    assert np.isfinite(float(row['psnr'])) and 0 < float(row['ssim']) <= 1


@pytest.mark.parametrize('protocol', ['realblur', 'dpdd'])
def test_a_checkpoint_evaluates_under_a_host_protocol_with_its_files_and_page(tmp_path, protocol):
  """The whole `--mode=eval` path (files, results page) under a protocol scored on the
  host; an untrained model's output may defeat the alignment: such images are NaN in
  the rows, left out of the means, and the page is still written."""
  data = make_pair_tree(tmp_path / 'data', splits=('test',), num_sequences=1, per_sequence=2,
                        size=(48, 64))
  write_tiny_checkpoint(tmp_path / 'work', step=1)
  config = mimo.get_config('tiny')
  config.data.dir = str(data)
  config.eval.protocol = protocol
  summary = evaluator.evaluate_checkpoint(config, str(tmp_path / 'work'))
  saved = json.loads((tmp_path / 'work' / 'eval' / 'step_1.json').read_text())
  assert saved['protocol'] == protocol and saved['num_unscored'] == summary['num_unscored']
  with open(tmp_path / 'work' / 'eval' / 'step_1.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 and all(np.isfinite(float(r['input_psnr'])) for r in rows)
  assert ('mae' in rows[0]) == (protocol == 'dpdd')
  assert (tmp_path / 'work' / 'eval' / 'step_1.html').is_file()
