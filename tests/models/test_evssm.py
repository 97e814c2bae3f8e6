"""EVSSM: the selective scan against its definition, the test model's windows, and
parity with the official code (tests/fixtures/evssm, computed once with
models/EVSSM.py and mamba's reference scan; make_fixture.py says how)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from deblur_jax.core.errors import InputError
from deblur_jax.inference import deblur
from deblur_jax.models import evssm
from deblur_jax.weights import evssm_pytorch, official
from helpers import FIXTURES

FIXTURE = FIXTURES / 'evssm'
TINY_WINDOWS = (24, 12, 6)  # make_fixture.py's windows: they overlap at every level.


def scan_inputs(batch=2, length=300, channels=6, state=4, seed=0):
  rng = np.random.RandomState(seed)
  u = rng.standard_normal((batch, length, channels))
  delta = np.log1p(np.exp(rng.standard_normal((batch, length, channels)) - 1))
  a = -np.exp(np.log(np.arange(1, state + 1)) + 0.3 * rng.standard_normal((channels, state)))
  b, c = rng.standard_normal((2, batch, length, state))
  d = 1 + 0.3 * rng.standard_normal(channels)
  return [x.astype(np.float32) for x in (u, delta, a, b, c, d)]


def scan_by_the_formula(u, delta, a, b, c, d):
  """h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = C_t . h_t + D u_t, float64."""
  u, delta, a, b, c, d = (np.float64(x) for x in (u, delta, a, b, c, d))
  h = np.zeros(u.shape[:1] + a.shape)
  ys = []
  for t in range(u.shape[1]):
    h = np.exp(delta[:, t, :, None] * a) * h + (delta[:, t] * u[:, t])[..., None] * b[:, t, None]
    ys.append(np.einsum('bdn,bn->bd', h, c[:, t]))
  return np.stack(ys, axis=1) + u * d


@pytest.mark.parametrize('chunk_fn', [None, evssm._sequential_chunk, evssm._associative_chunk])
def test_the_chunked_scan_and_its_gradient_are_the_sequential_one(chunk_fn):
  """300 steps in chunks of 64 (the last one padded), each inner form."""
  args = scan_inputs()
  expected = scan_by_the_formula(*args)
  sequential = evssm.selective_scan_sequential(*args)
  chunked = evssm.selective_scan(*args, chunk=64, chunk_fn=chunk_fn)
  np.testing.assert_allclose(sequential, expected, rtol=0, atol=1e-5)
  np.testing.assert_allclose(chunked, expected, rtol=0, atol=1e-5)

  def loss(scan):
    return lambda *a: jnp.sum(jnp.sin(scan(*a)))
  grads = jax.grad(loss(evssm.selective_scan_sequential), argnums=range(6))(*args)
  chunked_grads = jax.grad(loss(lambda *a: evssm.selective_scan(*a, chunk=64, chunk_fn=chunk_fn)),
                           argnums=range(6))(*args)
  for g, cg in zip(grads, chunked_grads):
    np.testing.assert_allclose(cg, g, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(g))))


@pytest.mark.parametrize('size,window,starts', [
    (36, 24, [0, 12]), (40, 24, [0, 16]), (9, 6, [0, 3]), (392, 384, [0, 8]),
    (400, 384, [0, 16]), (720, 384, [0, 336]), (1280, 384, [0, 299, 598, 896]),
    (20, 24, [0]), (24, 24, [0])])
def test_window_starts_are_the_official_grid(size, window, starts):
  """The first five as the official code cut them in make_fixture.py's run."""
  assert evssm.window_starts(size, window) == starts


def test_merging_the_windows_gives_the_map_back():
  x = jax.random.normal(jax.random.key(0), (2, 41, 30, 3))
  parts, corners = evssm.window_partition(x, 16)
  assert parts.shape == (2 * len(corners), 16, 16, 3) and len(corners) == 3 * 2
  np.testing.assert_allclose(evssm.window_merge(parts, corners, 41, 30), x, rtol=1e-6)


def fixture_state_dict(data, prefix='state_dict/'):
  return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


def test_a_small_evssm_gives_the_official_outputs():
  """dim 8, two blocks per level, windows overlapping at every level of a 40x36 image;
  the official outputs computed in float64."""
  with np.load(FIXTURE / 'tiny_io.npz') as data:
    x = data['input_uint8'].transpose(0, 2, 3, 1).astype(np.float32) / 255
    expected = data['output'].transpose(0, 2, 3, 1)
    state_dict = fixture_state_dict(data)
  sizes = evssm_pytorch.model_sizes(state_dict)
  assert sizes == {'dim': 8, 'num_blocks': (2, 2, 2), 'ffn_expansion_factor': 2.5,
                   'use_bias': False}
  params = evssm_pytorch.params_from_state_dict(state_dict)
  model = evssm.EVSSM(**sizes, window_sizes=TINY_WINDOWS)
  y = jax.jit(model.apply)({'params': params}, x)[0]
  assert float(jnp.std(y - x)) > 1  # far from the input: the weights are not trivial
  np.testing.assert_allclose(y, expected, rtol=0, atol=5e-5)
  # Training scans whole crops: another function where windows overlap.
  trained = jax.jit(model.apply, static_argnames='train')({'params': params}, x, train=True)[0]
  assert float(jnp.max(jnp.abs(trained - y))) > 1e-2
  unwindowed = jax.jit(evssm.EVSSM(**sizes, windows=False).apply)({'params': params}, x)[0]
  np.testing.assert_allclose(unwindowed, trained, rtol=0, atol=1e-5)


def test_bfloat16_compute_stays_close():
  """bfloat16 everywhere but the norms, FFTs and the scan (float32): within a tenth of
  what the small random network changes the image by (about 6% measured: its 12 blocks
  amplify rounding; a trained model's outputs stay near its input)."""
  with np.load(FIXTURE / 'tiny_io.npz') as data:
    x = data['input_uint8'].transpose(0, 2, 3, 1).astype(np.float32) / 255
    expected = data['output'].transpose(0, 2, 3, 1)
    state_dict = fixture_state_dict(data)
  model = evssm.EVSSM(**evssm_pytorch.model_sizes(state_dict), window_sizes=TINY_WINDOWS,
                      dtype=jnp.bfloat16)
  [y] = jax.jit(model.apply)({'params': evssm_pytorch.params_from_state_dict(state_dict)}, x)
  assert y.dtype == jnp.float32
  assert np.abs(np.asarray(y) - expected).mean() < 0.1 * np.abs(expected - x).mean()


def test_two_real_blocks_with_the_official_384_windows_give_the_official_outputs():
  """Two EVS blocks at dim 48 (transpose, then flip) on a 400x392 map: 2x2 windows of
  384, L = 147,456 per scan; the output (1, 392, 400, 48) compared at every 9th row
  and 11th column and by its sums."""
  x = np.random.RandomState(2).standard_normal((1, 48, 400, 392)).astype(np.float32)
  z = jnp.asarray(x.transpose(0, 2, 3, 1))
  with np.load(FIXTURE / 'block_io.npz') as data:
    for index in (0, 1):
      state_dict = fixture_state_dict(data, f'block{index}/')
      block = evssm.EVSBlock(48, index, 384)
      template = jax.eval_shape(lambda b=block: b.init(jax.random.key(0),
                                                       jnp.zeros((1, 8, 8, 48)), True))
      flat = {}
      for path, leaf in traverse_util.flatten_dict(template['params']).items():
        key = evssm_pytorch.torch_key(('encoder_level1_0', *path))
        value = state_dict[key.removeprefix('encoder_level1.block0.')]
        if path[-1] == 'kernel':
          value = value.transpose(evssm_pytorch.KERNEL_AXES[value.ndim])
        assert value.shape == leaf.shape, path
        flat[path] = value
      z = jax.jit(block.apply, static_argnums=2)(
          {'params': traverse_util.unflatten_dict(flat)}, z, True)
    y = np.asarray(z).transpose(0, 3, 1, 2).astype(np.float64)
    np.testing.assert_allclose(y[0, :, ::9, ::11], data['output_sample'], rtol=0, atol=2e-5)
    assert y.sum() == pytest.approx(float(data['output_sum']), rel=1e-6)
    assert np.abs(y).sum() == pytest.approx(float(data['output_abs_sum']), rel=1e-6)


def test_the_gopro_preset_has_the_official_parameter_count():
  model = evssm.EVSSM(**evssm.PRESETS['evssm'])
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  assert sum(x.size for x in jax.tree.leaves(variables)) == 17_129_472


def test_the_released_layout_converts_and_sizes_not_multiples_of_4_are_padded(tmp_path):
  """tiny_evssm.pth holds {'params': state_dict}, as the released net_g_GoPro.pth:
  the family is read from the keys; an image of 38x34 is reflect-padded to 40x36 and
  cropped back, as the official test script's commented-out padding does."""
  name, config = official.convert_file(str(FIXTURE / 'tiny_evssm.pth'), None, str(tmp_path))
  assert name == 'evssm' and config == {'name': 'evssm', 'dim': 8, 'num_blocks': [2, 2, 2],
                                        'ffn_expansion_factor': 2.5, 'use_bias': False}
  model, variables, step = deblur.load_model(str(tmp_path))
  assert step == 0 and model.windows and tuple(model.window_sizes) == evssm.WINDOWS
  model = model.clone(window_sizes=TINY_WINDOWS)
  with np.load(FIXTURE / 'tiny_io.npz') as data:
    x = data['input_uint8'].transpose(0, 2, 3, 1).astype(np.float32)[0] / 255
    expected = data['output'].transpose(0, 2, 3, 1)[0]
  deblur_fn = deblur.make_deblur_fn(model, variables)
  whole = deblur.deblur_whole(deblur_fn, x, deblur.size_bucket(model))
  np.testing.assert_allclose(whole, np.clip(expected, 0, 1), rtol=0, atol=5e-5)
  cropped = x[:38, :34]
  padded = np.pad(cropped, ((0, 2), (0, 2), (0, 0)), mode='reflect')
  out = deblur.deblur_whole(deblur_fn, cropped, deblur.size_bucket(model))
  assert out.shape == (38, 34, 3)
  np.testing.assert_allclose(out, deblur.deblur_whole(deblur_fn, padded, 4)[:38, :34],
                             rtol=0, atol=1e-6)


def test_a_truncated_state_dict_names_the_missing_keys():
  with np.load(FIXTURE / 'tiny_io.npz') as data:
    state_dict = fixture_state_dict(data)
  del state_dict['decoder_level2.block1.attn.A_logs']
  state_dict['decoder_level3.block0.attn.Ds'] = np.zeros(5, np.float32)
  with pytest.raises(InputError, match=r'missing.*decoder_level2\.block1\.attn\.A_logs'):
    evssm_pytorch.params_from_state_dict(state_dict)
