"""What the PyTorch-weight converters share: finding the state dict, the key
report, the conv layouts and the converted checkpoint's output directory."""

import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.weights import state_dicts

WEIGHT = np.zeros((2, 3), np.float32)


# ----------------------------------------------------------------------------
# find_state_dict.


def test_state_dict_found_bare_or_under_model_without_module_prefix():
  weight = np.zeros((2, 3), np.float32)
  assert state_dicts.find_state_dict({'model': {'a': weight}, 'epoch': 1}, 'f') == {'a': weight}
  assert state_dicts.find_state_dict({'module.a': weight}, 'f') == {'a': weight}
  with pytest.raises(InputError, match=r"f holds a dict with keys \[epoch, net\]"):
    state_dicts.find_state_dict({'net': {'a': weight}, 'epoch': 1}, 'f')
  with pytest.raises(InputError, match='f holds a list'):
    state_dicts.find_state_dict([weight], 'f')


@pytest.mark.parametrize('entry', ['model', 'params', 'state_dict'])
def test_state_dict_found_under_each_entry(entry):
  checkpoint = {entry: {'module.conv.weight': WEIGHT}, 'iter': 7}
  assert state_dicts.find_state_dict(checkpoint, 'f') == {'conv.weight': WEIGHT}


def test_model_is_preferred_to_params():
  checkpoint = {'model': {'a': WEIGHT}, 'params': {'b': WEIGHT}}
  assert list(state_dicts.find_state_dict(checkpoint, 'f')) == ['a']


def test_a_prefix_only_some_keys_have_is_kept():
  state_dict = {'module.a': WEIGHT, 'b': WEIGHT}
  assert state_dicts.find_state_dict(state_dict, 'f') == state_dict


@pytest.mark.parametrize('checkpoint,what', [
    ({}, 'a dict with keys []'),
    ({'a': WEIGHT, 'epoch': 3}, 'a dict with keys [a, epoch]'),
    ({'params': [WEIGHT]}, 'a dict with keys [params]'),
    (WEIGHT, 'a ndarray'),
], ids=['empty', 'not_all_arrays', 'params_not_a_dict', 'array'])
def test_bad_checkpoints_are_named_with_their_source(checkpoint, what):
  with pytest.raises(InputError) as error:
    state_dicts.find_state_dict(checkpoint, 'weights.pth')
  assert str(error.value).startswith(f'weights.pth holds {what}: neither ')


# ----------------------------------------------------------------------------
# key_problems and check_state_dict.


def test_no_problems_when_every_key_has_its_float_shape():
  expected = {'a.weight': (2, 3), 'a.bias': (3,)}
  found = {'a.weight': WEIGHT, 'a.bias': np.zeros(3, np.float16)}
  assert state_dicts.key_problems(expected, found) == []


def test_missing_keys_are_counted_against_all_expected():
  problems = state_dicts.key_problems({'a': (2, 3), 'b': (1,), 'c': (1,)}, {'a': WEIGHT})
  assert problems == ['2 of its 3 keys are missing: [b, c]']


def test_unexpected_keys_are_named_unless_ignored():
  found = {'a': WEIGHT, 'classifier.0.weight': WEIGHT, 'features.9.bias': WEIGHT}
  assert state_dicts.key_problems({'a': (2, 3)}, found) == [
      '2 keys are unexpected: [classifier.0.weight, features.9.bias]']
  assert state_dicts.key_problems(
      {'a': (2, 3)}, found, ignore_unexpected=lambda key: not key.startswith('features.')) == [
          '1 keys are unexpected: [features.9.bias]']


def test_misshapen_keys_name_the_expected_and_found_values():
  expected = {'shape': (3, 2), 'int': (2, 3), 'list': (2,)}
  found = {'shape': WEIGHT, 'int': WEIGHT.astype(np.int64), 'list': [1.0, 2.0]}
  assert state_dicts.key_problems(expected, found) == [
      '3 keys are misshapen: [int (expected float (2, 3), found int64 (2, 3)), '
      'list (expected float (2,), found list), '
      'shape (expected float (3, 2), found float32 (2, 3))]']


def test_all_three_kinds_are_reported_in_order():
  problems = state_dicts.key_problems({'a': (2, 3), 'b': (1,)},
                                      {'a': np.zeros(4, np.float64), 'c': WEIGHT})
  assert problems == ['1 of its 2 keys are missing: [b]', '1 keys are unexpected: [c]',
                      '1 keys are misshapen: [a (expected float (2, 3), found float64 (4,))]']


def test_lists_stop_at_twelve_names():
  expected = {f'layer.{i}.weight': (1,) for i in range(20)}
  problems = state_dicts.key_problems(expected, {})
  shown = ', '.join(f'layer.{i}.weight' for i in range(12))
  assert problems == [f'20 of its 20 keys are missing: [{shown} and 8 more]']


def test_keys_sort_with_their_numbers_as_numbers():
  found = {f'features.{i}.{name}': WEIGHT for i in (10, 2, 1) for name in ('weight', 'bias')}
  assert state_dicts.key_problems({}, found) == [
      '6 keys are unexpected: [features.1.bias, features.1.weight, features.2.bias, '
      'features.2.weight, features.10.bias, features.10.weight]']


def test_check_state_dict_raises_one_sentence_naming_source_and_description():
  with pytest.raises(InputError) as error:
    state_dicts.check_state_dict({'a': WEIGHT, 'z.1': WEIGHT}, {'a': (2, 3), 'b': (1,)},
                                 'a tiny model', 'w.pth', ignore_unexpected=lambda k: k == 'z.1')
  assert str(error.value) == 'w.pth does not hold a tiny model: 1 of its 2 keys are missing: [b].'
  with pytest.raises(InputError, match=r'keys are missing: \[b\]; 1 keys are unexpected: \[z\.1'):
    state_dicts.check_state_dict({'a': WEIGHT, 'z.1': WEIGHT}, {'a': (2, 3), 'b': (1,)},
                                 'a tiny model', 'w.pth')
  state_dicts.check_state_dict({'a': WEIGHT}, {'a': (2, 3)}, 'a tiny model', 'w.pth')


# ----------------------------------------------------------------------------
# Conv layouts and the output directory.


@pytest.mark.parametrize('flax_shape,axes,torch_shape', [
    ((3, 5, 4, 8), state_dicts.CONV_AXES, (8, 4, 3, 5)),  # Conv2d: (out, in, kh, kw)
    ((3, 5, 4, 8), state_dicts.TRANSPOSED_CONV_AXES, (4, 8, 3, 5)),  # (in, out, kh, kw)
    ((8,), None, (8,)),
])
def test_torch_shape_inverts_the_transpose(flax_shape, axes, torch_shape):
  assert state_dicts.torch_shape(flax_shape, axes) == torch_shape
  value = np.arange(np.prod(torch_shape), dtype=np.float64).reshape(torch_shape)
  flax_value = state_dicts.to_flax(value, axes)
  assert flax_value.shape == flax_shape and flax_value.dtype == np.float32


def test_output_dir_may_be_new_or_empty_but_not_a_file_or_holding_checkpoints(tmp_path):
  state_dicts.check_output_dir(str(tmp_path / 'new'))
  (tmp_path / 'checkpoints').mkdir()
  state_dicts.check_output_dir(str(tmp_path))
  (tmp_path / 'checkpoints' / '0').mkdir()
  with pytest.raises(InputError, match='already exists and is not an empty directory'):
    state_dicts.check_output_dir(str(tmp_path))
  (tmp_path / 'file').write_text('keep me')
  with pytest.raises(InputError, match=r'--output=.*file is a file'):
    state_dicts.check_output_dir(str(tmp_path / 'file'))
