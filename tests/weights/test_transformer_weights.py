"""Restormer and FFTformer .pth files, as the official code saves them, through the whole
converter: the family and preset read from the keys, every key checked, the saved
checkpoint giving the official outputs; and bad input refused in one line."""

import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur
from deblur_jax.weights import official, pytorch_reader, state_dicts
from helpers import FIXTURES

RESTORMER = FIXTURES / 'restormer'
FFTFORMER = FIXTURES / 'fftformer'
# Tiny random models of the official code (make_fixture.py): dim 4, one block per level.
TINY = {
    'restormer': RESTORMER / 'tiny_restormer.pth',  # {'params': ...}, WithBias, biases
    'restormer_biasfree': RESTORMER / 'tiny_restormer_biasfree.pth',  # the denoising layout
    'restormer_dual_pixel': RESTORMER / 'tiny_restormer_dual_pixel.pth',  # 6 input channels
    'fftformer': FFTFORMER / 'tiny_fftformer.pth',  # a bare state dict
}


def state_dict(path):
  return state_dicts.find_state_dict(pytorch_reader.load(str(path)), str(path))


def official_io(path):
  """(NHWC input, NHWC output clamped as the official test scripts clamp) of a fixture."""
  with np.load(path) as data:
    x = (data['input'].astype(np.float32) if 'input' in data.files
         else data['input_uint8'].astype(np.float32) / 255)
    y = data['output']
  if x.shape[1] in (3, 6):  # NCHW from the official code
    x, y = x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)
  return x, np.clip(y, 0, 1)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """name -> (the --model name the converter chose, its model config, the work directory)."""
  results = {}
  for name, path in TINY.items():
    workdir = tmp_path_factory.mktemp(name)
    results[name] = (*official.convert_file(str(path), None, str(workdir)), str(workdir))
  return results


def test_the_family_and_preset_are_read_from_the_keys(converted):
  assert official.identify(state_dict(TINY['restormer'])) == 'restormer'
  assert official.identify(state_dict(TINY['fftformer'])) == 'fftformer'
  assert {name: result[0] for name, result in converted.items()} == {
      'restormer': 'restormer_motion', 'restormer_biasfree': 'restormer_denoising',
      'restormer_dual_pixel': 'restormer_dual_pixel', 'fftformer': 'fftformer'}
  _, config, _ = converted['restormer']
  assert config == {'name': 'restormer', 'dim': 4, 'num_blocks': [1, 1, 1, 1],
                    'num_refinement_blocks': 1, 'heads': [1, 2, 2, 4],
                    'ffn_expansion_factor': 2.66, 'use_bias': True,
                    'layernorm_type': 'WithBias', 'dual_pixel_task': False}
  assert official.overrides('restormer_denoising', converted['restormer_biasfree'][1]) == (
      " --config.model.dim=4 '--config.model.num_blocks=(1,1,1,1,)' "
      "--config.model.num_refinement_blocks=1 '--config.model.heads=(1,2,2,4,)'")


@pytest.mark.parametrize('name,io_file', [
    ('restormer', RESTORMER / 'tiny_io.npz'),
    ('restormer_biasfree', RESTORMER / 'tiny_biasfree_io.npz'),
    ('fftformer', FFTFORMER / 'tiny_io.npz'),
    # 21x35 and 27x45: reflect-padded to 24x40 and 32x64 as the official test scripts pad.
    ('restormer', RESTORMER / 'tiny_padded_io.npz'),
    ('fftformer', FFTFORMER / 'tiny_padded_io.npz'),
])
def test_the_converted_checkpoint_gives_the_official_outputs(converted, name, io_file):
  model, variables, step = deblur.load_model(converted[name][2])
  assert step == 0
  x, expected = official_io(io_file)
  out = np.asarray(deblur.make_deblur_fn(model, variables)(x))
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize('name,side', [('restormer', 5), ('fftformer', 7)])
def test_images_smaller_than_the_multiple_are_padded_not_refused(converted, name, side):
  """Sides under 8 (Restormer) or 32 (FFTformer), which the official scripts cannot
  reflect-pad, are padded by repeating the border instead."""
  model, variables, _ = deblur.load_model(converted[name][2])
  x = np.random.default_rng(0).uniform(size=(1, side, side + 2, 3)).astype(np.float32)
  out = np.asarray(deblur.make_deblur_fn(model, variables)(x))
  assert out.shape == x.shape and np.isfinite(out).all()


def test_a_dual_pixel_checkpoint_refuses_rgb_images_in_one_line(converted):
  with pytest.raises(InputError, match=r'^Restormer with these settings takes 6-channel images, '
                                       r'but deblur_jax\.predict \(and export\) reads RGB ones'):
    deblur.load_model(converted['restormer_dual_pixel'][2])


def test_a_restormer_checkpoint_given_as_fftformer_says_what_it_is(tmp_path):
  with pytest.raises(InputError, match=r'holds restormer weights, not fftformer ones as '
                                       r'--model=fftformer says: use --model=restormer_motion'):
    official.convert_file(str(TINY['restormer']), 'fftformer', str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('family,path', [('restormer', TINY['restormer']),
                                         ('fftformer', TINY['fftformer'])])
def test_missing_and_misshapen_keys_are_named(family, path):
  weights = dict(state_dict(path))
  del weights['refinement.0.ffn.project_in.weight']
  weights['output.weight'] = weights['output.weight'][:, :2]
  with pytest.raises(InputError) as caught:
    official.FAMILIES[family].convert(weights, None, 'x.pth')
  message = str(caught.value)
  assert message.startswith('x.pth does not hold ')
  assert '1 of its' in message and 'missing: [refinement.0.ffn.project_in.weight]' in message
  assert 'misshapen: [output.weight (expected float' in message


def test_a_truncated_file_is_an_input_error(tmp_path):
  data = TINY['fftformer'].read_bytes()
  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(InputError, match='truncated.pth'):
    official.convert_file(str(truncated), None, str(tmp_path / 'out'))


@pytest.mark.parametrize('pairs,preset,expected', [
    ([(48, 127), (96, 255), (192, 510), (384, 1021)], 2.66, 2.66),  # Restormer's own
    ([(4, 10), (8, 21), (16, 42), (32, 85)], 3.0, 2.66),  # int(C x 2.66) at dim 4
    ([(4, 10), (8, 20), (16, 40)], 3.0, 2.5),
    ([(48, 144), (96, 288)], 3.0, 3.0),
])
def test_the_expansion_factor_gives_every_hidden_width(pairs, preset, expected):
  factor = state_dicts.expansion_factor(pairs, preset)
  assert factor == expected
  assert all(int(width * factor) == hidden for width, hidden in pairs)
