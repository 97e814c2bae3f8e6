"""NAFNet: presets, the official layer semantics (pixel shuffle, padding, TLC) and the registry.

Parity with the official PyTorch code is tested in tests/weights/test_nafnet.py.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from deblur_jax import models
from deblur_jax.models import layers, nafnet

TINY = dict(width=8, enc_blk_nums=(1, 1), middle_blk_num=1, dec_blk_nums=(1, 1))


def count_params(model):
  return sum(x.size for x in jax.tree.leaves(models.variables_template(model)['params']))


def tiny_variables(model, seed=0, example=None):
  """Random variables (drawn with NumPy: no init to compile), beta and gamma too
  (they start at zero), so that every branch of every block changes the output;
  shaped for `example` inputs (default: a 16x16 image)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name in ('beta', 'gamma'):
      value = 0.5 * rng.normal(size=shape)
    elif name == 'scale':
      value = 1 + 0.2 * rng.normal(size=shape)
    elif name == 'kernel':
      value = rng.uniform(-1.5, 1.5, size=shape) / np.sqrt(np.prod(shape[:-1]))
    else:
      value = 0.2 * rng.normal(size=shape)
    return jnp.asarray(value, jnp.float32)

  template = (models.variables_template(model) if example is None else
              jax.eval_shape(lambda: model.init(jax.random.key(0), example)))
  return jax.tree_util.tree_map_with_path(draw, template)


def images(height, width, seed=0):
  return jax.random.uniform(jax.random.key(seed), (1, height, width, 3))


@pytest.mark.parametrize('preset,expected', [('nafnet_width32', 17_111_907),
                                             ('nafnet_width64', 67_888_835)])
def test_preset_parameter_counts_match_the_official_models(preset, expected):
  config = ml_collections.ConfigDict({'name': 'nafnet', **nafnet.PRESETS[preset]})
  assert count_params(models.build_model(config)) == expected


def test_registry_builds_it_at_any_size():
  assert models.get_model_class('nafnet') is nafnet.NAFNet
  assert nafnet.NAFNet.size_multiple == 1


def test_pixel_shuffle_follows_pytorchs_channel_order():
  """Input channel c * 4 + i * 2 + j goes to output channel c at offset (i, j)."""
  x = jnp.arange(8.0).reshape(1, 1, 1, 8)
  expected = np.array([[[0, 4], [1, 5]],
                       [[2, 6], [3, 7]]], np.float32)[None]  # (1, 2, 2, 2) NHWC
  np.testing.assert_array_equal(nafnet.pixel_shuffle(x), expected)


def test_layer_norm_normalises_each_pixel_over_channels_with_biased_variance():
  x = jax.random.normal(jax.random.key(0), (1, 3, 4, 5)) * 3 + 1
  y = nafnet.LayerNorm2d().apply({'params': {'scale': jnp.ones(5), 'bias': jnp.zeros(5)}}, x)
  mu = x.mean(-1, keepdims=True)
  expected = (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(y, expected, atol=1e-5)


def test_zero_weights_return_the_input_at_a_size_not_a_multiple_of_four():
  model = nafnet.NAFNet(**TINY)
  x = images(23, 37)
  zero = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype), models.variables_template(model))
  (out,) = model.apply(zero, x)
  np.testing.assert_array_equal(out, x)


def test_odd_sizes_are_zero_padded_at_the_bottom_right_and_cropped_back():
  model = nafnet.NAFNet(**TINY)
  variables = tiny_variables(model)
  x = images(23, 37)
  (out,) = model.apply(variables, x)
  (padded_out,) = model.apply(variables, jnp.pad(x, ((0, 0), (0, 1), (0, 3), (0, 0))))
  assert out.shape == x.shape and out.dtype == jnp.float32
  np.testing.assert_allclose(out, padded_out[:, :23, :37], atol=1e-6)


def test_tlc_kernels_follow_the_official_first_pass_at_the_training_size():
  assert nafnet.tlc_kernel_sizes(256, 4) == [384, 192, 96, 48, 24]
  # 13 pads to 16 for two levels; base size int(19.5) = 19; 16 * 19 // 13 = 23.
  assert nafnet.tlc_kernel_sizes(13, 2) == [23, 11, 5]


def box_means(x, k1, k2):
  """Mean over every k1 x k2 window of (N, H, W, C), replicate-padded back to H x W
  (the extra row or column at the bottom and right), by brute force."""
  n, h, w, c = x.shape
  out = np.stack([np.stack([x[:, a:a + k1, b:b + k2].mean((1, 2)) for b in range(w - k2 + 1)], 1)
                  for a in range(h - k1 + 1)], 1)
  ph, pw = h - out.shape[1], w - out.shape[2]
  return np.pad(out, ((0, 0), (ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)),
                mode='edge')


@pytest.mark.parametrize('height,width,kernel,window', [
    (9, 14, 4, (4, 4)),   # local on both sides
    (6, 14, 7, (6, 7)),   # the window covers the height only: still local
    (6, 7, 7, None),      # covers both: the global mean
])
def test_tlc_pool_is_a_window_mean_or_global_where_the_window_covers_the_map(
    height, width, kernel, window):
  x = np.asarray(jax.random.uniform(jax.random.key(0), (2, height, width, 3)))
  pooled = nafnet.tlc_avg_pool(jnp.asarray(x), kernel)
  if window is None:
    assert pooled.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(pooled, x.mean((1, 2), keepdims=True), atol=1e-6)
  else:
    np.testing.assert_allclose(pooled, box_means(x, *window), atol=1e-6)


def test_tlc_pool_for_symbolic_sizes_chooses_the_window_or_global_mean_at_run_time():
  # One program for every size (jax.export), as exported NAFNets pool.
  shape = jax.export.symbolic_shape('n, h, w, 3')
  exported = jax.export.export(jax.jit(lambda x: nafnet.tlc_avg_pool(x, 7)))(
      jax.ShapeDtypeStruct(shape, jnp.float32))
  for height, width, window in ((9, 14, (7, 7)), (6, 14, (6, 7)), (6, 7, None)):
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, height, width, 3)))
    expected = (np.broadcast_to(x.mean((1, 2), keepdims=True), x.shape) if window is None
                else box_means(x, *window))
    np.testing.assert_allclose(exported.call(x), expected, atol=1e-6)


def test_tlc_changes_evaluation_but_training_pools_globally():
  tlc, plain = nafnet.NAFNet(**TINY, tlc_train_size=8), nafnet.NAFNet(**TINY)
  variables = tiny_variables(plain)
  x = images(24, 40)
  train_out = tlc.apply(variables, x, train=True)[0]
  np.testing.assert_array_equal(train_out, plain.apply(variables, x, train=True)[0])
  np.testing.assert_array_equal(train_out, plain.apply(variables, x, train=False)[0])
  assert float(jnp.abs(tlc.apply(variables, x, train=False)[0] - train_out).max()) > 1e-3


def test_tlc_pools_globally_up_to_the_training_size():
  tlc, plain = nafnet.NAFNet(**TINY, tlc_train_size=40), nafnet.NAFNet(**TINY)
  variables = tiny_variables(plain)
  x = images(24, 40)
  np.testing.assert_allclose(tlc.apply(variables, x)[0], plain.apply(variables, x)[0],
                             atol=1e-6)


def test_dropout_acts_only_in_training():
  model = nafnet.NAFNet(**TINY, dropout_rate=0.5)
  variables = tiny_variables(model)
  x = images(24, 40)
  evaluated = model.apply(variables, x)[0]
  np.testing.assert_array_equal(evaluated, nafnet.NAFNet(**TINY).apply(variables, x)[0])
  trained = [model.apply(variables, x, train=True, rngs={'dropout': jax.random.key(s)})[0]
             for s in (0, 1)]
  assert float(jnp.abs(trained[0] - trained[1]).max()) > 1e-3
  assert float(jnp.abs(trained[0] - evaluated).max()) > 1e-3


def test_bfloat16_compute_keeps_float32_parameters_and_output():
  model = nafnet.NAFNet(**TINY, dtype=jnp.bfloat16)
  variables = tiny_variables(model)
  x = images(24, 40)
  (out,) = model.apply(variables, x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  assert out.dtype == jnp.float32
  reference = nafnet.NAFNet(**TINY).apply(variables, x)[0]
  assert float(jnp.abs(out - reference).max()) < 0.2


def test_depthwise_conv_equals_the_grouped_flax_conv_and_its_gradient():
  layer = layers.DepthwiseConv3x3()
  x = jax.random.normal(jax.random.key(0), (2, 7, 9, 6))
  variables = layer.init(jax.random.key(1), x)
  assert variables['params']['kernel'].shape == (3, 3, 1, 6)
  assert float(jnp.abs(variables['params']['kernel']).max()) <= 9 ** -0.5  # PyTorch's bound
  grouped = nn.Conv(6, (3, 3), padding=1, feature_group_count=6)
  np.testing.assert_allclose(layer.apply(variables, x), grouped.apply(variables, x), atol=1e-5)
  loss = lambda module, v: (module.apply(v, x) ** 3).sum()  # noqa: E731
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4),
               jax.grad(functools.partial(loss, layer))(variables),
               jax.grad(functools.partial(loss, grouped))(variables))


def test_a_scanned_level_is_its_blocks_applied_in_turn_with_their_own_weights():
  stack = nafnet.NAFBlockStack(8, num_blocks=3)
  x = jax.random.normal(jax.random.key(0), (1, 12, 10, 8))
  variables = tiny_variables(stack, example=x)
  assert variables['params']['blocks']['conv1']['kernel'].shape == (3, 1, 1, 8, 16)
  per_block = nafnet.unstack_blocks({'stack_0': {'blocks': variables['params']['blocks']}})
  expected = x
  for j in range(3):  # the names unstack_blocks gives only NAFNet's levels: 'stack' is not one
    expected = nafnet.NAFBlock(8).apply(
        {'params': jax.tree.map(lambda leaf, j=j: leaf[j], variables['params']['blocks'])},
        expected)
  assert set(per_block) == {'stack_0'}
  np.testing.assert_allclose(stack.apply(variables, x), expected, rtol=0, atol=1e-5)
  assert float(jnp.abs(expected - x).max()) > 0.1
  with layers.plain_forms():  # unrolled for converters: no loop in the traced program
    assert 'scan' not in str(jax.make_jaxpr(stack.apply)(variables, x))
    np.testing.assert_allclose(stack.apply(variables, x), expected, rtol=0, atol=1e-5)
  assert 'scan' in str(jax.make_jaxpr(stack.apply)(variables, x))


def test_unstack_and_stack_blocks_name_every_block_and_invert_each_other():
  model = nafnet.NAFNet(width=8, enc_blk_nums=(2, 0), middle_blk_num=3, dec_blk_nums=(1, 1))
  params = tiny_variables(model)['params']
  per_block = nafnet.unstack_blocks(params)
  assert sorted(k for k in per_block if k[0] in 'emd') == [
      'decoders_0_0', 'decoders_1_0', 'downs_0', 'downs_1', 'encoders_0_0', 'encoders_0_1',
      'ending', 'middle_blks_0', 'middle_blks_1', 'middle_blks_2']
  np.testing.assert_array_equal(per_block['middle_blks_2']['conv3']['kernel'],
                                params['middle_blks']['blocks']['conv3']['kernel'][2])
  restacked = nafnet.stack_blocks(per_block)
  jax.tree.map(np.testing.assert_array_equal, restacked, params)
  del per_block['encoders_0_0']
  with pytest.raises(ValueError, match=r'level encoders_0 has blocks \[1\], not 0 to 0'):
    nafnet.stack_blocks(per_block)


def test_unequal_encoder_and_decoder_levels_are_an_error():
  model = nafnet.NAFNet(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1,))
  with pytest.raises(ValueError, match='as many decoder as encoder levels'):
    models.variables_template(model)
