"""torchvision VGG weights: conversion to the .npz, the loader and their errors, and
the perceptual loss built from a converted file. Weights are random; no PyTorch
is needed."""

import jax
import ml_collections
import numpy as np
import pytest

from deblur_jax.core.errors import InputError
from deblur_jax.models import vgg
from deblur_jax.training import losses
from deblur_jax.weights import pytorch_reader
from deblur_jax.weights import vgg19_pytorch as vgg_weights


def torchvision_state_dict(network, seed=0, random_up_to=14):
  """A torchvision-layout state dict: He-scaled random convs up to features.{random_up_to}
  (conv3_3), zeros after it, and a classifier the converter drops."""
  rng = np.random.default_rng(seed)
  state_dict = {}
  for key, shape in vgg.param_shapes(network).items():
    index = int(key.split('/')[0].split('_')[1])
    torch_shape = shape if key.endswith('bias') else (shape[3], shape[2], 3, 3)
    if index <= random_up_to:
      fan_in = 9 * shape[2] if len(shape) == 4 else 9
      value = rng.normal(size=torch_shape) * np.sqrt(2 / fan_in)
    else:
      value = np.zeros(torch_shape)
    state_dict[vgg_weights.torch_key(key)] = value.astype(np.float32)
  state_dict['classifier.0.weight'] = np.zeros((4, 2), np.float32)
  return state_dict


def write_npz(path, flat, compressed=False):
  (np.savez_compressed if compressed else np.savez)(path, **flat)
  return str(path)


def test_converted_weights_give_the_torch_layout_convolution():
  """Features at conv2_1 computed from the torchvision tensors directly (NCHW, OIHW):
  ImageNet normalisation, conv, ReLU, conv, ReLU, max-pool, conv."""
  state_dict = torchvision_state_dict('vgg16')
  params = vgg_weights.unflatten(vgg_weights.convert_state_dict(state_dict, 'vgg16', 'test'))
  params = {k: v for k, v in params.items() if k in ('features_0', 'features_2', 'features_5')}
  images = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
  out = vgg.VGGFeatures(network='vgg16', layer='conv2_1').apply({'params': params}, images)

  def conv(x, index):
    y = jax.lax.conv_general_dilated(x, state_dict[f'features.{index}.weight'], (1, 1),
                                     ((1, 1), (1, 1)), dimension_numbers=('NCHW', 'OIHW', 'NCHW'),
                                     precision=jax.lax.Precision.HIGHEST)
    return y + state_dict[f'features.{index}.bias'][None, :, None, None]

  x = (images - np.asarray(vgg.IMAGENET_MEAN)) / np.asarray(vgg.IMAGENET_STD)
  x = jax.nn.relu(conv(x.transpose(0, 3, 1, 2).astype(np.float32), 0))
  x = jax.nn.relu(conv(x, 2))
  x = x.reshape(1, 64, 4, 2, 4, 2).max(axis=(3, 5))
  expected = conv(x, 5).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_conversion_names_missing_and_foreign_keys():
  state_dict = torchvision_state_dict('vgg19', random_up_to=-1)
  with pytest.raises(InputError, match=r"torchvision's vgg16.*6 of its 26 keys are missing: "
                                       r"\[features\.17\.bias, features\.17\.weight"
                                       r".*12 keys are unexpected: \[features\.16\.bias") as error:
    vgg_weights.convert_state_dict(state_dict, 'vgg16', 'vgg19.pth')
  assert 'classifier' not in str(error.value)  # not a conv of another VGG


def test_perceptual_loss_from_a_converted_file(tmp_path, monkeypatch):
  """torchvision state dict -> convert_vgg -> .npz -> config.loss -> loss values."""
  monkeypatch.setattr(pytorch_reader, 'load', lambda path: torchvision_state_dict('vgg16'))
  (tmp_path / 'vgg16.pth').write_bytes(b'read by the patched loader')
  output = str(tmp_path / 'vgg16.npz')
  assert vgg_weights.convert_file(str(tmp_path / 'vgg16.pth'), 'vgg16', output) == 14_714_688
  with pytest.raises(InputError, match='never overwrites'):
    vgg_weights.convert_file(str(tmp_path / 'vgg16.pth'), 'vgg16', output)

  config = ml_collections.ConfigDict({
      'name': 'l1', 'extra_weights': {'perceptual': 1.0}, 'perceptual_network': 'vgg16',
      'perceptual_layer': 'conv3_3', 'perceptual_weights': output, 'perceptual_distance': 'mse'})
  perceptual = losses.build_scale_loss(ml_collections.ConfigDict({**config, 'name': 'perceptual'}))
  images = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
  assert float(perceptual(images, images)) == 0.0
  other = np.clip(images + 0.1, 0, 1)
  value = float(perceptual(other, images))
  assert value > 0
  combined = losses.build_loss_fn(config)((other,), images)
  assert float(combined) == pytest.approx(float(losses.l1(other, images)) + value, rel=1e-5)


def test_npz_round_trip_keeps_the_values(tmp_path):
  flat = {key: np.random.default_rng(0).normal(size=shape).astype(np.float32)
          if key.startswith('features_0/') else np.zeros(shape, np.float32)
          for key, shape in vgg.param_shapes('vgg16').items()}
  path = write_npz(tmp_path / 'vgg16.npz', flat, compressed=True)
  params = vgg_weights.load_vgg_params(path, 'vgg16', 'conv1_1')
  assert set(params) == {'features_0'}
  np.testing.assert_array_equal(params['features_0']['kernel'], flat['features_0/kernel'])
  assert len(vgg_weights.load_vgg_params(path, 'vgg16')) == 13


def test_a_missing_weights_file_says_how_to_make_one(tmp_path):
  with pytest.raises(InputError, match=r'does not exist.*vgg19-dcbb9e9d\.pth.*python -m '
                                       r'deblur_jax\.convert_vgg .*--network=vgg19'):
    vgg_weights.load_vgg_params(str(tmp_path / 'vgg19.npz'), 'vgg19')


def test_a_file_of_the_other_network_names_the_keys(tmp_path):
  path = write_npz(tmp_path / 'vgg19.npz',
                   {key: np.zeros(1, np.float32) for key in vgg.param_shapes('vgg19')})
  with pytest.raises(InputError, match=r"keys are missing: \[features_17/bias, features_17/kernel"
                                       r".*keys are unexpected: .*It looks like vgg19 weights"):
    vgg_weights.load_vgg_params(path, 'vgg16')


def test_missing_and_misshapen_keys_are_named(tmp_path):
  flat = {key: np.zeros(shape, np.float32) for key, shape in vgg.param_shapes('vgg16').items()}
  del flat['features_28/bias']
  flat['features_0/kernel'] = np.zeros((3, 3, 1, 64), np.float32)
  path = write_npz(tmp_path / 'bad.npz', flat, compressed=True)
  with pytest.raises(InputError, match=r"keys are missing: \[features_28/bias\].*keys are "
                                       r"misshapen: \[features_0/kernel \(expected float "
                                       r"\(3, 3, 3, 64\), found float32 \(3, 3, 1, 64\)\)\]"):
    vgg_weights.load_vgg_params(path, 'vgg16')


def test_a_file_that_is_not_npz_is_named(tmp_path):
  path = tmp_path / 'vgg16.npz'
  path.write_bytes(b'not a zip')
  with pytest.raises(InputError, match=r'vgg16\.npz is not an \.npz file'):
    vgg_weights.load_vgg_params(str(path), 'vgg16')
