"""Which official checkpoint a file holds, and the --model names the converter takes."""

import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.weights import official, pytorch_reader, state_dicts
from helpers import FIXTURES

MIMO_UNET = str(FIXTURES / 'mimo_unet_tiny_zip.pkl')  # base width 4, 2 ResBlocks per level
NAFNET = str(FIXTURES / 'nafnet' / 'tiny_nafnet.pth')  # width 8, blocks [1, 1], 1, [1, 1]
OTHER = str(FIXTURES / 'other_model.pt')  # a small nn.Sequential


def state_dict(path):
  return state_dicts.find_state_dict(pytorch_reader.load(path), path)


def test_the_family_is_read_from_the_keys():
  assert official.identify(state_dict(MIMO_UNET)) == 'mimo_unet'
  assert official.identify(state_dict(NAFNET)) == 'nafnet'
  assert official.identify(state_dict(OTHER)) is None


def test_without_model_the_weights_say_what_they_are(tmp_path):
  name, config = official.convert_file(MIMO_UNET, None, str(tmp_path / 'mimo'))
  assert name == 'mimo_unet' and (config['base_width'], config['num_res']) == (4, 2)
  name, config = official.convert_file(NAFNET, None, str(tmp_path / 'nafnet'))
  assert name == 'nafnet_width32' and config['width'] == 8


def test_a_nafnet_checkpoint_given_as_mimo_unet_says_what_it_is(tmp_path):
  with pytest.raises(InputError, match=r'tiny_nafnet\.pth holds nafnet weights, not mimo_unet '
                                       r'ones as --model=mimo_unet says: use '
                                       r'--model=nafnet_width32'):
    official.convert_file(NAFNET, 'mimo_unet', str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


def test_weights_of_neither_family_need_a_model_to_be_checked_against(tmp_path):
  with pytest.raises(InputError, match=r'other_model\.pt holds none of the weights deblur_jax '
                                       r'converts \(MIMO-UNet, NAFNet, Restormer, FFTformer, '
                                       r"EVSSM; its keys begin \['0\.bias'.*give --model"):
    official.convert_file(OTHER, None, str(tmp_path))


def test_an_unknown_model_name_lists_the_known_ones(tmp_path):
  with pytest.raises(InputError, match=r"Unknown --model='nafnet'; choose one of "
                                       r"\['evssm', 'fftformer', .*'mimo_unet'"):
    official.convert_file(NAFNET, 'nafnet', str(tmp_path))


def test_overrides_name_the_fields_that_differ_from_the_preset():
  assert official.overrides('mimo_unet', {'base_width': 32, 'num_res': 8,
                                          'dropout_rate': 0.0}) == ''
  assert official.overrides('mimo_unet', {'base_width': 4, 'num_res': 2, 'dropout_rate': 0.0}
                            ) == ' --config.model.base_width=4 --config.model.num_res=2'
  _, config = official.FAMILIES['nafnet'].convert(state_dict(NAFNET), None, NAFNET)[:2]
  assert official.overrides('nafnet_width32', config) == (
      " --config.model.width=8 '--config.model.enc_blk_nums=(1,1,)'"
      " '--config.model.dec_blk_nums=(1,1,)'")
