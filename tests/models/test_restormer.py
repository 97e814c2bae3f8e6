"""Restormer: parity with the official PyTorch code, the preset's size, layer semantics.

The fixtures tests/fixtures/restormer/*.npz hold tiny random official Restormers
(swz30/Restormer basicsr/models/archs/restormer_arch.py): their state dicts and
an input (float16, values drawn as float16 numbers), the official output
computed in float64 (stored as float32: torch's own float32 output of the
dual-pixel one is 1.3e-5 off it, ours ~4e-6), and the official constructor's
arguments (JSON); tests/fixtures/restormer/make_fixture.py wrote them (it needs
torch, einops and restormer_arch.py on the path).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax.models import nafnet, restormer
from deblur_jax.weights import restormer_pytorch

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'restormer')


def model_from_official(fields: dict) -> restormer.Restormer:
  return restormer.Restormer(
      dim=fields['dim'], num_blocks=tuple(fields['num_blocks']),
      num_refinement_blocks=fields['num_refinement_blocks'], heads=tuple(fields['heads']),
      ffn_expansion_factor=fields.get('ffn_expansion_factor', 2.66), use_bias=fields['bias'],
      layernorm_type=fields['LayerNorm_type'], dual_pixel_task=fields['dual_pixel_task'])


def load_fixture(name):
  with np.load(os.path.join(FIXTURES, name)) as data:
    fields = json.loads(str(data['config']))
    state_dict = {k.removeprefix('state_dict/'): data[k] for k in data.files
                  if k.startswith('state_dict/')}
    nchw_in, nchw_out = data['input'].astype(np.float32), data['output']
  return fields, state_dict, nchw_in.transpose(0, 2, 3, 1), nchw_out.transpose(0, 2, 3, 1)


def param_count(model, channels=3):
  x = jax.ShapeDtypeStruct((1, 16, 16, channels), jnp.float32)
  template = jax.eval_shape(model.init, jax.random.key(0), x)
  return sum(leaf.size for leaf in jax.tree.leaves(template['params']))


@pytest.mark.parametrize('name', ['tiny_io.npz', 'tiny_dual_pixel_io.npz'])
def test_matches_the_official_pytorch_output(name):
  fields, state_dict, x, expected = load_fixture(name)
  model = model_from_official(fields)
  sizes = restormer_pytorch.model_sizes(state_dict)  # read from the keys alone
  assert restormer.Restormer(**sizes) == model
  params = restormer_pytorch.params_from_state_dict(state_dict, sizes, name)
  template = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  assert jax.tree.structure(params) == jax.tree.structure(template)
  assert jax.tree.map(np.shape, params) == jax.tree.map(lambda s: s.shape, template)
  out = model.apply({'params': params}, x)
  assert len(out) == 1 and out[0].dtype == jnp.float32
  np.testing.assert_allclose(out[0], expected, atol=1e-5, rtol=0)


# Counted from the official code (torch, the yml options' constructor arguments).
@pytest.mark.parametrize('preset,channels,expected', [
    ('restormer_motion', 3, 26_126_644),
    ('restormer_denoising', 3, 26_111_668),  # BiasFree: no LayerNorm biases
    # skip_conv (48 * 96) and patch_embed's weights for the 3 extra input channels
    ('restormer_dual_pixel', 6, 26_132_548),
])
def test_presets_have_the_official_parameter_counts(preset, channels, expected):
  model = restormer.Restormer(**restormer.PRESETS[preset])
  assert param_count(model, channels) == expected


def test_bfloat16_compute_stays_close_and_returns_float32():
  fields, state_dict, x, expected = load_fixture('tiny_io.npz')
  model = model_from_official(fields).clone(dtype=jnp.bfloat16)
  params = restormer_pytorch.params_from_state_dict(
      state_dict, restormer_pytorch.model_sizes(state_dict), 'tiny_io.npz')
  out = model.apply({'params': params}, x)[0]
  assert out.dtype == jnp.float32
  assert float(jnp.abs(out - expected).max()) < 0.1


def test_pixel_unshuffle_inverts_pixel_shuffle_in_torch_channel_order():
  x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
  y = restormer.pixel_unshuffle(x)
  assert y.shape == (2, 2, 3, 12)
  # Channel c * 4 + i * 2 + j of pixel (h, w) is channel c of pixel (2h + i, 2w + j).
  assert float(y[1, 1, 2, 1 * 4 + 1 * 2 + 0]) == float(x[1, 3, 4, 1])
  np.testing.assert_array_equal(nafnet.pixel_shuffle(y), x)


def test_rejects_sides_that_are_not_multiples_of_8():
  model = restormer.Restormer(dim=4, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
  assert model.size_multiple == 8
  with pytest.raises(ValueError, match='divisible by 8'):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 20, 3)))
