"""The official MIMO-UNet weights converter: PyTorch files read without PyTorch, mapped onto
MIMOUNet, numerically equal to PyTorch, and bad files refused by name.

tests/fixtures holds files written once by real PyTorch (pytorch_reference.py).
"""

import collections
import os
import pathlib
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax.core import checkpoints
from deblur_jax.core.errors import InputError
from deblur_jax.models import mimo_unet
from deblur_jax.weights import mimo_unet_pytorch as mimo_weights
from deblur_jax.weights import official, pytorch_reader, state_dicts
from helpers import FIXTURES

DATA = FIXTURES
FORMATS = ('legacy', 'zip')
TINY_SIZES = (4, 2)  # base width, ResBlocks per level of the committed model


def tiny_checkpoint(serialization):
  return str(DATA / f'mimo_unet_tiny_{serialization}.pkl')


def tiny_state_dict(serialization='zip'):
  return state_dicts.find_state_dict(pytorch_reader.load(tiny_checkpoint(serialization)), 'tiny')


class RunsCode:
  """Unpickling this runs a shell command, as a malicious checkpoint would."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return os.system, (self.command,)


def write_legacy_file(path, obj=None, object_pickle=None):
  """A legacy-serialization file around `obj` (or its pickle), written without PyTorch."""
  header = (pytorch_reader.LEGACY_MAGIC_NUMBER, pytorch_reader.LEGACY_PROTOCOL_VERSION,
            {'protocol_version': 1001, 'little_endian': True})
  object_pickle = object_pickle or pickle.dumps(obj, protocol=2)
  with open(path, 'wb') as f:
    f.write(b''.join(pickle.dumps(part, protocol=2) for part in header))
    f.write(object_pickle + pickle.dumps([], protocol=2))


def write_zip_file(path, obj):
  """A zip-serialization archive around `obj`, written without PyTorch."""
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps(obj, protocol=2))


# ----------------------------------------------------------------------------
# Key mapping and shapes.


@pytest.mark.parametrize('flax_path,key', [
    (('encoder_1', 'res_0', 'conv_1', 'conv', 'kernel'), 'Encoder.1.layers.0.main.1.main.0.weight'),
    (('decoder_2', 'res_7', 'conv_0', 'conv', 'bias'), 'Decoder.2.layers.7.main.0.main.0.bias'),
    (('feat_extract_3', 'conv', 'kernel'), 'feat_extract.3.main.0.weight'),
    (('convs_out_1', 'conv', 'bias'), 'ConvsOut.1.main.0.bias'),
    (('convs_0', 'conv', 'kernel'), 'Convs.0.main.0.weight'),
    (('fam_2', 'merge', 'conv', 'kernel'), 'FAM2.merge.main.0.weight'),
    (('scm_1', 'main_3', 'conv', 'kernel'), 'SCM1.main.3.main.0.weight'),
    (('scm_2', 'out', 'conv', 'bias'), 'SCM2.conv.main.0.bias'),
    (('aff_0', 'conv_1', 'conv', 'kernel'), 'AFFs.0.conv.1.main.0.weight'),
])
def test_flax_paths_map_to_the_official_keys(flax_path, key):
  assert mimo_weights.torch_key(flax_path) == key


@pytest.mark.parametrize('num_res,num_params', [(8, 6_807_171), (20, 16_107_651)])
def test_expected_shapes_are_the_official_models(num_res, num_params):
  shapes = mimo_weights.expected_torch_shapes(32, num_res)
  assert sum(np.prod(s) for s in shapes.values()) == num_params  # the paper's counts
  # A weight and a bias per conv: feat_extract, Convs, ConvsOut, SCMs, FAMs,
  # AFFs and two per ResBlock in six stacks.
  assert len(shapes) == 2 * (6 + 2 + 2 + 2 * 5 + 2 + 2 * 2 + 6 * num_res * 2)
  assert shapes['feat_extract.1.main.0.weight'] == (64, 32, 3, 3)  # Conv2d: (out, in, kh, kw)
  assert shapes['feat_extract.3.main.0.weight'] == (128, 64, 4, 4)  # transposed: (in, out, ...)
  assert shapes['SCM1.main.3.main.0.weight'] == (125, 64, 1, 1)
  assert shapes['AFFs.1.conv.0.main.0.weight'] == (64, 224, 1, 1)
  assert shapes['Decoder.0.layers.0.main.1.main.0.bias'] == (128,)


@pytest.mark.parametrize('serialization', FORMATS)
def test_committed_checkpoint_has_exactly_the_expected_keys(serialization):
  checkpoint = pytorch_reader.load(tiny_checkpoint(serialization))
  assert checkpoint['epoch'] == 3
  state_dict = state_dicts.find_state_dict(checkpoint, 'tiny')
  assert mimo_weights.infer_sizes(state_dict, (32, 8)) == TINY_SIZES
  expected = mimo_weights.expected_torch_shapes(*TINY_SIZES)
  assert {k: v.shape for k, v in state_dict.items()} == expected
  assert all(v.dtype == np.float32 for v in state_dict.values())


# ----------------------------------------------------------------------------
# Reading both serializations.


@pytest.mark.parametrize('serialization', FORMATS)
def test_reader_keeps_offsets_strides_dtypes_and_containers(serialization):
  checkpoint = pytorch_reader.load(str(DATA / f'tensors_{serialization}.pt'))
  expected = np.load(DATA / 'tensors.npz')
  tensors = checkpoint['tensors']
  assert isinstance(tensors, collections.OrderedDict)
  assert list(tensors) == list(expected.keys())
  for name, value in tensors.items():
    assert isinstance(value, np.ndarray), name
    assert value.shape == expected[name].shape, name
    np.testing.assert_array_equal(value.astype(expected[name].dtype), expected[name], name)
  assert tensors['float16'].dtype == np.float16 and tensors['float64'].dtype == np.float64
  assert tensors['shared_head'].dtype == np.int64 and tensors['bool'].dtype == np.bool_
  assert str(tensors['bfloat16'].dtype) == 'bfloat16'
  assert checkpoint['nested'] == [1, (2.5, 'three'), {'four': None}]
  assert checkpoint['counter'] == collections.Counter({10: 1, 20: 2})


# ----------------------------------------------------------------------------
# Numbers and the written checkpoint.


@pytest.mark.parametrize('serialization', FORMATS)
def test_converted_model_equals_pytorch_at_all_scales(serialization):
  state_dict = tiny_state_dict(serialization)
  params = mimo_weights.convert_state_dict(state_dict, *TINY_SIZES, 'tiny')
  data = np.load(DATA / 'mimo_unet_tiny_io.npz')
  outputs = mimo_unet.MIMOUNet(*TINY_SIZES).apply({'params': params}, jnp.asarray(data['input']))
  for name, output in zip(('out_4', 'out_2', 'out_1'), outputs):
    # The residuals PyTorch added are about 0.1-0.3, so this tests every layer.
    np.testing.assert_allclose(np.asarray(output), data[name], rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize('model_name,dropout_rate', [('mimo_unet', 0.0),
                                                     ('mimo_unet_plus', 0.1)])
def test_converted_checkpoint_restores_for_evaluation(tmp_path, caplog, model_name,
                                                      dropout_rate):
  name, model_config = official.convert_file(tiny_checkpoint('legacy'), model_name, str(tmp_path))
  assert name == model_name
  assert model_config == {'name': 'mimo_unet', 'base_width': 4, 'num_res': 2,
                          'dropout_rate': dropout_rate, 'batch_norm': False}
  assert 'base width 4 and 2 ResBlocks per level, not the 32' in caplog.text

  model = mimo_unet.MIMOUNet(*TINY_SIZES)
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  manager = checkpoints.create_manager(str(tmp_path), keep=1, read_only=True)
  variables, step = checkpoints.restore_model_variables(manager, template, model_config)
  manager.close()
  assert step == 0
  expected = mimo_weights.convert_state_dict(tiny_state_dict(), *TINY_SIZES, 'tiny')
  jax.tree.map(np.testing.assert_array_equal, variables['params'], expected)


def test_convert_never_overwrites_checkpoints(tmp_path):
  official.convert_file(tiny_checkpoint('zip'), 'mimo_unet', str(tmp_path))
  with pytest.raises(InputError, match='already exists and is not an empty directory'):
    official.convert_file(tiny_checkpoint('zip'), 'mimo_unet', str(tmp_path))


# ----------------------------------------------------------------------------
# Bad input.


def test_missing_unexpected_and_misshapen_keys_are_named():
  state_dict = tiny_state_dict()
  del state_dict['Decoder.1.layers.1.main.0.main.0.bias']
  state_dict['Encoder.0.layers.0.main.0.main.1.running_mean'] = np.zeros(4, np.float32)
  # The classic mistake: a transposed conv's weight stored as a Conv2d's.
  state_dict['feat_extract.3.main.0.weight'] = state_dict['feat_extract.3.main.0.weight'] \
      .transpose(1, 0, 2, 3)
  state_dict['SCM2.conv.main.0.bias'] = state_dict['SCM2.conv.main.0.bias'].astype(np.int64)
  with pytest.raises(InputError) as error:
    mimo_weights.convert_state_dict(state_dict, *TINY_SIZES, 'weights.pkl')
  message = str(error.value)
  assert message.startswith('weights.pkl does not hold a MIMO-UNet state dict with base width 4 '
                            'and 2 ResBlocks per level')
  assert '1 of its 100 keys are missing: [Decoder.1.layers.1.main.0.main.0.bias]' in message
  assert '1 keys are unexpected: [Encoder.0.layers.0.main.0.main.1.running_mean]' in message
  assert ('feat_extract.3.main.0.weight (expected float (16, 8, 4, 4), found float32 '
          '(8, 16, 4, 4))') in message
  assert 'SCM2.conv.main.0.bias (expected float (8,), found int64 (8,))' in message


def test_a_checkpoint_of_another_model_names_the_keys(tmp_path):
  with pytest.raises(InputError) as error:
    official.convert_file(str(DATA / 'other_model.pt'), 'mimo_unet', str(tmp_path))
  message = str(error.value)
  assert 'other_model.pt does not hold a MIMO-UNet state dict' in message
  assert '244 of its 244 keys are missing: [AFFs.0.conv.0.main.0.bias' in message
  assert '4 keys are unexpected: [0.bias, 0.weight, 2.bias, 2.weight]' in message
  assert not (tmp_path / 'checkpoints').exists()


@pytest.mark.parametrize('contents,reason', [
    (b'', "it is neither a zip archive nor a pickle stream starting with PyTorch's magic "
          'number'),
    (b'\x89PNG\r\n\x1a\n' + bytes(range(256)), 'it is neither a zip archive nor a pickle'),
    (pickle.dumps({'model': {'a': 1}}), 'it is neither a zip archive nor a pickle'),
], ids=['empty', 'png', 'plain_pickle'])
def test_files_that_are_not_pytorch_checkpoints_are_named(tmp_path, contents, reason):
  path = tmp_path / 'weights.pkl'
  path.write_bytes(contents)
  with pytest.raises(InputError, match=f'{path} is not a readable PyTorch checkpoint: {reason}'):
    pytorch_reader.load(str(path))


def test_truncated_and_foreign_archives_are_named(tmp_path):
  truncated = tmp_path / 'truncated.pkl'
  truncated.write_bytes(pathlib.Path(tiny_checkpoint('legacy')).read_bytes()[:-100])
  with pytest.raises(InputError, match=f'{truncated} is not a readable .* is truncated'):
    pytorch_reader.load(str(truncated))
  archive = tmp_path / 'photos.zip'
  with zipfile.ZipFile(archive, 'w') as z:
    z.writestr('photo.txt', 'not a checkpoint')
  with pytest.raises(InputError, match=r'no single <folder>/data.pkl'):
    pytorch_reader.load(str(archive))


@pytest.mark.parametrize('write', [write_legacy_file, write_zip_file])
def test_a_pickle_that_would_run_code_is_refused_by_name(tmp_path, write):
  marker = tmp_path / 'code_ran'
  path = tmp_path / 'evil.pkl'
  write(path, {'model': RunsCode(f'touch {marker}')})
  forbidden = f'{os.system.__module__}.system'  # posix.system on Linux
  with pytest.raises(InputError, match=f'{path} references {forbidden}, which a checkpoint'):
    pytorch_reader.load(str(path))
  assert not marker.exists()


def test_a_pickle_cannot_change_the_allowed_globals(tmp_path):
  """BUILD (set state) on torch.FloatStorage, which every load shares."""
  path = tmp_path / 'sets_state.pkl'
  # GLOBAL torch.FloatStorage, {'dtype': None}, BUILD, STOP.
  write_legacy_file(path, object_pickle=b'\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00'
                    b'dtypeNsb.')
  with pytest.raises(InputError, match='tries to change a StorageClass object'):
    pytorch_reader.load(str(path))
  assert tiny_state_dict()['SCM1.conv.main.0.weight'].dtype == np.float32


def test_training_on_converted_weights_is_a_clear_error(tmp_path, pair_tree):
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  from deblur_jax.training import loop  # pylint: disable=g-import-not-at-top
  _, model_config = official.convert_file(tiny_checkpoint('zip'), 'mimo_unet', str(tmp_path))
  config = mimo.get_config('tiny')
  config.model.update(model_config)
  config.data.dir = str(pair_tree)
  with pytest.raises(InputError, match='holds model weights only'):
    loop.train_and_evaluate(config, str(tmp_path))
