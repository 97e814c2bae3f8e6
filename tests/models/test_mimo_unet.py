"""MIMO-UNet: presets, outputs, the official layer semantics and the registry."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.configs import mimo
from deblur_jax.models import image_ops, layers, mimo_unet


def count_params(model, size=16):
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(x.size for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('variant,expected', [('', 6_807_171), ('plus', 16_107_651)])
def test_preset_parameter_counts_match_the_paper(variant, expected):
  model = models.build_model(mimo.get_config(variant).model)
  assert count_params(model) == expected


def test_returns_three_scales_of_restored_images():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1)
  x = jax.random.uniform(jax.random.key(1), (2, 16, 24, 3))
  variables = model.init(jax.random.key(0), x)
  out = model.apply(variables, x)
  assert [o.shape for o in out] == [(2, 4, 6, 3), (2, 8, 12, 3), (2, 16, 24, 3)]
  assert all(o.dtype == jnp.float32 for o in out)
  assert all(bool(jnp.all(jnp.isfinite(o))) for o in out)


def test_outputs_are_residuals_on_the_nearest_downsampled_input():
  """With every weight zero the network returns its inputs at each scale."""
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1)
  x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  zero = jax.tree.map(jnp.zeros_like, variables)
  out4, out2, out1 = model.apply(zero, x)
  np.testing.assert_array_equal(out1, x)
  np.testing.assert_array_equal(out2, x[:, ::2, ::2])
  np.testing.assert_array_equal(out4, x[:, ::4, ::4])


def torch_conv_transpose(x, kernel, bias):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its definition: input pixel i
  adds x[i] * w[k] to output 2i - 1 + k. x NHWC, kernel (4, 4, in, out)."""
  n, h, w, _ = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * w + 2, kernel.shape[-1]))
  for ky in range(4):
    for kx in range(4):
      out[:, ky:ky + 2 * h:2, kx:kx + 2 * w:2] += np.einsum('nhwc,co->nhwo', x, kernel[ky, kx])
  return out[:, 1:2 * h + 1, 1:2 * w + 1] + bias


def test_transposed_conv_equals_torch_definition():
  layer = mimo_unet.BasicConv(5, kernel_size=4, stride=2, relu=False, transpose=True)
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  variables = layer.init(jax.random.key(0), x)
  kernel = np.asarray(variables['params']['conv']['kernel'], np.float64)
  bias = np.asarray(variables['params']['conv']['bias'], np.float64)
  assert np.abs(kernel).max() <= (5 * 16) ** -0.5  # PyTorch's init bound
  np.testing.assert_allclose(layer.apply(variables, x),
                             torch_conv_transpose(x.astype(np.float64), kernel, bias), atol=1e-5)


@pytest.mark.parametrize('kernel_size,stride,padding', [(1, 1, None), (3, 1, None),
                                                       (3, 2, None), (2, 2, 0)])
def test_torch_conv_equals_flax_conv_gradients_included(kernel_size, stride, padding):
  layer = layers.TorchConv(6, kernel_size, stride, padding)
  x = np.random.default_rng(0).normal(size=(2, 6, 8, 3)).astype(np.float32)
  variables = layer.init(jax.random.key(0), x)
  pad = kernel_size // 2 if padding is None else padding
  reference = nn.Conv(6, (kernel_size,) * 2, (stride, stride), ((pad, pad),) * 2)

  def loss(module, params, x):
    return jnp.sum(jnp.sin(module.apply({'params': params}, x)))

  for ours, theirs in zip(jax.value_and_grad(functools.partial(loss, layer), (0, 1))(
                              variables['params'], x),
                          jax.value_and_grad(functools.partial(loss, reference), (0, 1))(
                              variables['params'], x)):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5),
                 ours, theirs)


@pytest.mark.parametrize('use_bias', [True, False])
def test_concat_conv_equals_the_1x1_conv_of_the_upsampled_concatenation(use_bias):
  """MIMO-UNet's AFF, SCM and decoder 1x1 convs: the same parameters and, up to float
  rounding, the same outputs and gradients as the official `torch.cat` then conv."""
  rng = np.random.default_rng(0)
  parts = [(rng.normal(size=(2, 8, 12, 4)).astype(np.float32), 1),
           (rng.normal(size=(2, 4, 6, 5)).astype(np.float32), 2),
           (rng.normal(size=(2, 2, 3, 3)).astype(np.float32), 4)]
  layer = layers.ConcatConv1x1(6, use_bias=use_bias)
  reference = layers.Conv1x1(6, use_bias=use_bias)

  def concatenated(maps):
    return jnp.concatenate([image_ops.nearest_upsample(x, f) for x, (_, f) in zip(maps, parts)],
                           axis=-1)

  maps = [x for x, _ in parts]
  variables = layer.init(jax.random.key(0), parts)
  reference_variables = reference.init(jax.random.key(0), concatenated(maps))
  jax.tree.map(np.testing.assert_array_equal, variables, reference_variables)  # same init

  def loss(params, maps):
    return jnp.sum(jnp.sin(layer.apply({'params': params},
                                       [(x, f) for x, (_, f) in zip(maps, parts)])))

  def reference_loss(params, maps):
    return jnp.sum(jnp.sin(reference.apply({'params': params}, concatenated(maps))))

  ours = jax.value_and_grad(loss, (0, 1))(variables['params'], maps)
  theirs = jax.value_and_grad(reference_loss, (0, 1))(variables['params'], maps)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5), ours, theirs)


def test_only_a_1x1_conv_takes_concatenated_parts():
  parts = ((jnp.zeros((1, 4, 4, 2)), 1), (jnp.zeros((1, 4, 4, 2)), 1))
  with pytest.raises(ValueError, match='Only a 1x1 stride-1 conv takes concatenated parts'):
    mimo_unet.BasicConv(features=2, kernel_size=3).init(jax.random.key(0), parts)


def test_stride_2_conv_pads_symmetrically_like_torch():
  """PyTorch's Conv2d(k=3, s=2, p=1) reads input rows 2i-1..2i+1, so output 0
  sees padding above and rows 0-1; 'SAME' would read rows 0-2 instead."""
  layer = mimo_unet.BasicConv(features=1, kernel_size=3, stride=2, relu=False)
  x = np.zeros((1, 8, 8, 1), np.float32)
  x[0, 2, :, 0] = 1.0  # only row 2 is lit
  variables = layer.init(jax.random.key(0), x)
  params = {'params': {'conv': {'kernel': np.zeros((3, 3, 1, 1), np.float32).copy(),
                                'bias': np.zeros(1, np.float32)}}}
  params['params']['conv']['kernel'][0, 1, 0, 0] = 1.0  # tap on the row above the centre
  out = np.asarray(layer.apply(params, x))[0, :, :, 0]
  del variables
  # Output row i centres on input row 2i and its top tap reads row 2i - 1: never row 2.
  assert out.sum() == 0
  params['params']['conv']['kernel'][0, 1, 0, 0] = 0.0
  params['params']['conv']['kernel'][2, 1, 0, 0] = 1.0  # tap on the row below: 2i + 1 = ...
  params['params']['conv']['kernel'][1, 1, 0, 0] = 1.0  # centre tap: row 2i = 2 for i = 1
  out = np.asarray(layer.apply(params, x))[0, :, :, 0]
  assert out[1].min() == 1.0 and out.sum() == out[1].sum()


def test_initialisation_follows_torch_bounds():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1)
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  kernel = params['encoder_0']['res_0']['conv_0']['conv']['kernel']  # 3x3, 8 -> 8
  bound = (3 * 3 * 8) ** -0.5
  assert float(jnp.abs(kernel).max()) <= bound
  assert float(jnp.abs(kernel).max()) > 0.8 * bound  # uniform, not a narrow normal
  transposed = params['feat_extract_3']['conv']['kernel']  # 32 -> 16, fan_in from out
  assert float(jnp.abs(transposed).max()) <= (16 * 16) ** -0.5


def test_dropout_acts_only_in_training():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1, dropout_rate=0.5)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  eval_a = model.apply(variables, x)[-1]
  eval_b = model.apply(variables, x)[-1]
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(2)})[-1]
  train_b = model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(3)})[-1]
  assert not np.allclose(train_a, train_b)


def test_batch_norm_variant_has_statistics_and_no_conv_bias():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1, batch_norm=True)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  assert 'batch_stats' in variables
  conv = variables['params']['encoder_0']['res_0']['conv_0']
  assert 'bias' not in conv['conv'] and 'scale' in conv['norm']
  for rgb in ('convs_out_0', 'convs_out_1', 'feat_extract_5'):  # residual image convs
    assert set(variables['params'][rgb]) == {'conv'}
  _, updates = model.apply(variables, jnp.ones((2, 8, 8, 3)), train=True, mutable=['batch_stats'])
  assert not jax.tree.all(jax.tree.map(
      lambda a, b: bool(jnp.all(a == b)), updates['batch_stats'], variables['batch_stats']))


def test_rejects_sizes_not_divisible_by_4():
  model = mimo_unet.MIMOUNet(base_width=8, num_res=1)
  with pytest.raises(ValueError, match='divisible by 4'):
    model.init(jax.random.key(0), jnp.zeros((1, 10, 8, 3)))


def test_registry_rejects_unknown_model_name(tiny_config):
  tiny_config.model.name = 'mimo_unet_xl'
  with pytest.raises(ValueError, match="Unknown config.model.name 'mimo_unet_xl'.*mimo_unet"):
    models.build_model(tiny_config.model)


def test_registry_rejects_fields_the_model_does_not_take(tiny_config):
  tiny_config.unlock()
  tiny_config.model.num_blocks = 3
  with pytest.raises(ValueError, match=r"\['num_blocks'\].*num_res"):
    models.build_model(tiny_config.model)


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny_config):
  model = models.build_model(tiny_config.model, jnp.bfloat16)
  x = jnp.zeros((1, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert model.apply(variables, x)[-1].dtype == jnp.float32
