"""The NAFNet converter: official keys mapped onto NAFNet, numerically equal to
PyTorch with and without TLC, other checkpoints refused by name, and the result
deblurring through deblur_jax.inference.

tests/fixtures/nafnet holds files written once by real PyTorch (make_fixture.py).
"""

import jax
import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur
from deblur_jax.models import nafnet
from deblur_jax.weights import nafnet_pytorch as nafnet_weights
from deblur_jax.weights import official, pytorch_reader, state_dicts
from helpers import FIXTURES

CHECKPOINT = str(FIXTURES / 'nafnet' / 'tiny_nafnet.pth')
TINY = {'width': 8, 'enc_blk_nums': (1, 1), 'middle_blk_num': 1, 'dec_blk_nums': (1, 1)}
TLC_TRAIN_SIZE = 13  # make_fixture.py's NAFNetLocal train_size


def tiny_state_dict():
  return state_dicts.find_state_dict(pytorch_reader.load(CHECKPOINT), 'tiny')


@pytest.fixture(scope='module')
def tiny_params():
  return nafnet_weights.convert_state_dict(tiny_state_dict(), TINY, 'tiny')


@pytest.fixture(scope='module')
def io():
  return np.load(FIXTURES / 'nafnet' / 'tiny_nafnet_io.npz')


def sizes_of(preset):
  return {k: v for k, v in nafnet.PRESETS[preset].items() if k != 'tlc_train_size'}


@pytest.mark.parametrize('flax_path,key', [
    (('intro', 'kernel'), 'intro.weight'),
    (('ending', 'bias'), 'ending.bias'),
    (('encoders_3_27', 'conv2', 'kernel'), 'encoders.3.27.conv2.weight'),
    (('encoders_0_0', 'sca', 'bias'), 'encoders.0.0.sca.1.bias'),
    (('encoders_0_0', 'norm1', 'scale'), 'encoders.0.0.norm1.weight'),
    (('encoders_0_0', 'beta'), 'encoders.0.0.beta'),
    (('downs_0', 'kernel'), 'downs.0.weight'),
    (('middle_blks_0', 'gamma'), 'middle_blks.0.gamma'),
    (('middle_blks_0', 'sca', 'kernel'), 'middle_blks.0.sca.1.weight'),
    (('ups_2', 'kernel'), 'ups.2.0.weight'),
    (('decoders_1_0', 'norm2', 'bias'), 'decoders.1.0.norm2.bias'),
])
def test_flax_paths_map_to_the_official_keys(flax_path, key):
  assert nafnet_weights.torch_key(flax_path) == key


def test_expected_shapes_are_the_official_width32_model():
  shapes = nafnet_weights.expected_torch_shapes(sizes_of('nafnet_width32'))
  assert sum(int(np.prod(s)) for s in shapes.values()) == 17_111_907
  assert shapes['intro.weight'] == (32, 3, 3, 3)
  assert shapes['encoders.3.27.conv2.weight'] == (512, 1, 3, 3)  # depthwise on 2 * 256
  assert shapes['encoders.0.0.beta'] == (1, 32, 1, 1)
  assert shapes['downs.0.weight'] == (64, 32, 2, 2)
  assert shapes['ups.0.0.weight'] == (1024, 512, 1, 1)
  assert shapes['ending.weight'] == (3, 32, 3, 3)


@pytest.mark.parametrize('preset', sorted(nafnet.PRESETS))
def test_sizes_are_read_from_the_keys(preset):
  sizes = sizes_of(preset)
  state_dict = {k: np.broadcast_to(np.float32(0), s)  # no memory for the real sizes
                for k, s in nafnet_weights.expected_torch_shapes(sizes).items()}
  assert nafnet_weights.model_sizes(state_dict) == sizes


def test_committed_checkpoint_has_exactly_the_expected_keys():
  state_dict = tiny_state_dict()
  assert nafnet_weights.model_sizes(state_dict) == TINY
  assert state_dicts.key_problems(nafnet_weights.expected_torch_shapes(TINY), state_dict) == []


def test_depthwise_and_scale_parameters_change_layout(tiny_params):
  state_dict = tiny_state_dict()
  block = nafnet.unstack_blocks(tiny_params)['encoders_1_0']
  torch_dw = state_dict['encoders.1.0.conv2.weight']  # (2C, 1, 3, 3)
  assert block['conv2']['kernel'].shape == (3, 3, 1, 32)
  np.testing.assert_array_equal(block['conv2']['kernel'][1, 2, 0, 5], torch_dw[5, 0, 1, 2])
  np.testing.assert_array_equal(block['beta'], state_dict['encoders.1.0.beta'].reshape(-1))
  np.testing.assert_array_equal(block['norm1']['scale'], state_dict['encoders.1.0.norm1.weight'])


@pytest.mark.parametrize('tlc', [False, True])
@pytest.mark.parametrize('tag', ['a', 'b'])
def test_converted_model_equals_pytorch(tiny_params, io, tlc, tag):
  """input_a is 23x37, input_b 9x29; with TLC the windows are local at every level."""
  model = nafnet.NAFNet(**TINY, tlc_train_size=TLC_TRAIN_SIZE if tlc else None)
  (out,) = model.apply({'params': tiny_params}, io[f'input_{tag}'])
  expected = io[f'{"tlc" if tlc else "plain"}_{tag}']
  # The network changes its input by up to about 4.5, and TLC by up to 0.3.
  np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=1e-5)


def test_converted_checkpoint_deblurs_through_inference(tmp_path, io):
  name, model_config = official.convert_file(CHECKPOINT, None, str(tmp_path))
  assert name == 'nafnet_width32'  # the nearest preset; the sizes are the file's
  assert model_config == {'name': 'nafnet', 'width': 8, 'enc_blk_nums': [1, 1],
                          'middle_blk_num': 1, 'dec_blk_nums': [1, 1], 'dropout_rate': 0.0,
                          'tlc_train_size': 256}
  model, variables, step = deblur.load_model(str(tmp_path))
  assert step == 0 and isinstance(model, nafnet.NAFNet)
  image = io['input_a'][0]
  out = deblur.deblur_image(deblur.make_deblur_fn(model, variables), image, bucket=1)
  # At 23x37 TLC's 384-pixel window (256 * 1.5) covers every map: global pooling.
  np.testing.assert_allclose(out, np.clip(io['plain_a'][0], 0, 1), rtol=0, atol=1e-5)
  with pytest.raises(InputError, match='already exists and is not an empty directory'):
    official.convert_file(CHECKPOINT, 'nafnet_width32', str(tmp_path))


def test_missing_unexpected_and_misshapen_keys_are_named():
  state_dict = tiny_state_dict()
  del state_dict['decoders.1.0.sca.1.bias']
  state_dict['encoders.0.0.sca.0.weight'] = np.zeros(8, np.float32)
  state_dict['middle_blks.0.beta'] = state_dict['middle_blks.0.beta'].reshape(-1)
  with pytest.raises(InputError) as error:
    nafnet_weights.convert_state_dict(state_dict, TINY, 'weights.pth')
  message = str(error.value)
  assert message.startswith('weights.pth does not hold a NAFNet state dict with width 8, '
                            'encoder blocks [1, 1], 1 middle blocks, decoder blocks [1, 1]')
  assert 'keys are missing: [decoders.1.0.sca.1.bias]' in message
  assert '1 keys are unexpected: [encoders.0.0.sca.0.weight]' in message
  assert ('middle_blks.0.beta (expected float (1, 32, 1, 1), found float32 (32,))'
          in message)


def test_a_mimo_unet_checkpoint_is_refused_naming_the_missing_keys(tmp_path):
  path = str(FIXTURES / 'mimo_unet_tiny_zip.pkl')
  with pytest.raises(InputError, match=r'holds mimo_unet weights, not nafnet ones as '
                                       r'--model=nafnet_width64 says: use --model=mimo_unet'):
    official.convert_file(path, 'nafnet_width64', str(tmp_path))
  state_dict = state_dicts.find_state_dict(pytorch_reader.load(path), path)
  with pytest.raises(InputError) as error:
    nafnet_weights.convert(state_dict, None, path)
  message = str(error.value)
  assert f'{path} does not hold a NAFNet state dict' in message
  # Nothing in it shows NAFNet sizes, so it is checked against the width32 preset.
  assert '664 of its 664 keys are missing: [decoders.0.0.beta, decoders.0.0.conv1.bias' in message
  assert '100 keys are unexpected: [AFFs.0.conv.0.main.0.bias' in message
  assert not (tmp_path / 'checkpoints').exists()


def test_a_file_that_is_not_there_is_named(tmp_path):
  with pytest.raises(InputError, match='missing.pth is not a file'):
    official.convert_file(str(tmp_path / 'missing.pth'), None, str(tmp_path / 'out'))


def test_converted_parameters_are_float32(tiny_params):
  assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(tiny_params))
