"""FFTformer: parity with the official PyTorch code, its parameter count, its layers.

The fixture tests/fixtures/fftformer/tiny_io.npz holds the state dict, an input
and the output of the official fftformer (github.com/kkkls/FFTformer,
basicsr/models/archs/fftformer_arch.py) at dim 4, num_blocks [1, 1, 1, 1], one
refinement block, FFN expansion 2.5, every parameter random (norms and FFT
masks away from their init), run with torch 2.13.0 on the CPU.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax.models import fftformer, image_ops, layers
from deblur_jax.weights import fftformer_pytorch

FIXTURE = pathlib.Path(__file__).parents[1] / 'fixtures' / 'fftformer' / 'tiny_io.npz'


def load_fixture():
  with np.load(FIXTURE) as data:
    state_dict = {k.removeprefix('state_dict/'): data[k] for k in data.files
                  if k.startswith('state_dict/')}
    x = data['input_uint8'].astype(np.float32) / 255
    return state_dict, x.transpose(0, 2, 3, 1), data['output'].transpose(0, 2, 3, 1)


def test_matches_the_official_model_on_a_small_random_network():
  state_dict, x, expected = load_fixture()
  sizes = fftformer_pytorch.model_sizes(state_dict)
  assert sizes == {'dim': 4, 'num_blocks': (1, 1, 1, 8), 'num_refinement_blocks': 1,
                   'ffn_expansion_factor': 2.5, 'use_bias': False}
  params = fftformer_pytorch.params_from_state_dict(state_dict)
  [y] = jax.jit(fftformer.FFTformer(**sizes).apply)({'params': params}, jnp.asarray(x))
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y, expected, atol=1e-5, rtol=0)


def test_bfloat16_compute_stays_close():
  state_dict, x, expected = load_fixture()
  sizes = fftformer_pytorch.model_sizes(state_dict)
  params = fftformer_pytorch.params_from_state_dict(state_dict)
  model = fftformer.FFTformer(**sizes, dtype=jnp.bfloat16)
  [y] = jax.jit(model.apply)({'params': params}, jnp.asarray(x))
  assert y.dtype == jnp.float32
  assert np.abs(np.asarray(y) - expected).mean() < 0.05 * np.abs(expected - x).mean()


def test_the_gopro_preset_has_the_official_parameter_count():
  model = fftformer.FFTformer(**fftformer.PRESETS['fftformer'])
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert set(variables) == {'params'}
  params = variables['params']
  assert sum(x.size for x in jax.tree.leaves(params)) == 16_560_474
  # Unused by the forward pass, but an official state dict holds it.
  assert params['reduce_chan_level2']['kernel'].shape == (1, 1, 192, 96)
  assert fftformer.FFTformer.size_multiple == 32


def test_rejects_sizes_not_multiples_of_32():
  with pytest.raises(ValueError, match='divisible by 32'):
    fftformer.FFTformer(dim=4, num_blocks=(1, 1, 1), num_refinement_blocks=0).init(
        jax.random.key(0), jnp.zeros((1, 32, 48, 3)))


def test_bilinear_upsample_matches_pytorchs_align_corners_false():
  """Against F.interpolate(scale_factor=2, mode='bilinear', align_corners=False)
  written out per axis: source coordinate (i + 0.5) / 2 - 0.5, clamped at 0."""
  x = np.random.default_rng(0).normal(size=(1, 3, 5, 2)).astype(np.float32)

  def reference_1d(v, axis):
    n = v.shape[axis]
    src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(v.ndim)])
    return np.take(v, i0, axis) * (1 - lam) + np.take(v, i1, axis) * lam

  expected = reference_1d(reference_1d(x, 1), 2)
  np.testing.assert_allclose(image_ops.bilinear_upsample_2x(jnp.asarray(x)), expected, atol=1e-6)


def test_inverse_fft_of_a_non_hermitian_spectrum_matches_numpy():
  """The DFFN mask makes patch spectra non-Hermitian; the inverse must drop the
  parts a real signal cannot have as numpy's (and torch's) irfft2 do."""
  rng = np.random.default_rng(0)
  spectrum = (rng.normal(size=(1, 2, 8, 3, 5, 4))
              + 1j * rng.normal(size=(1, 2, 8, 3, 5, 4))).astype(np.complex64)
  expected = np.fft.irfft2(spectrum.astype(np.complex128), s=(8, 8), axes=(2, 4))
  np.testing.assert_allclose(fftformer.patch_irfft2(jnp.asarray(spectrum)),
                             expected.reshape(1, 16, 24, 4), atol=1e-5)


def test_the_dft_forms_equal_numpys_fft_of_each_patch():
  """patch_dft / patch_idft (matrix products, for ONNX) as numpy's rfft2 / irfft2, the
  inverse on a non-Hermitian spectrum too."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 16, 24, 3)).astype(np.float32)
  real, imag = fftformer.patch_dft(jnp.asarray(x))
  patches = x.reshape(2, 2, 8, 3, 8, 3)
  expected = np.fft.rfft2(patches.astype(np.float64), axes=(2, 4))
  np.testing.assert_allclose(real, expected.real, atol=1e-4)
  np.testing.assert_allclose(imag, expected.imag, atol=1e-4)
  spectrum = rng.normal(size=real.shape) + 1j * rng.normal(size=real.shape)
  np.testing.assert_allclose(
      fftformer.patch_idft(jnp.asarray(spectrum.real, jnp.float32),
                           jnp.asarray(spectrum.imag, jnp.float32)),
      np.fft.irfft2(spectrum, s=(8, 8), axes=(2, 4)).reshape(x.shape), atol=1e-5)


def test_the_patch_filters_in_plain_forms_equal_the_fft_forms():
  rng = np.random.default_rng(2)
  a, b = (jnp.asarray(rng.normal(size=(1, 16, 8, 4)), jnp.float32) for _ in range(2))
  mask = jnp.asarray(rng.normal(size=fftformer.patch_mask_shape(4)), jnp.float32)
  fft_forms = fftformer.filter_patches(a, mask), fftformer.multiply_patch_spectra(a, b)
  with layers.plain_forms():
    plain = (jax.make_jaxpr(fftformer.filter_patches)(a, mask),
             fftformer.filter_patches(a, mask), fftformer.multiply_patch_spectra(a, b))
  assert 'fft' not in str(plain[0]) and 'fft' in str(jax.make_jaxpr(fftformer.filter_patches)(
      a, mask))
  np.testing.assert_allclose(plain[1], fft_forms[0], atol=1e-5)
  np.testing.assert_allclose(plain[2], fft_forms[1], atol=1e-4)


def test_torch_keys_follow_the_official_module_names():
  key = fftformer_pytorch.torch_key
  assert key(('patch_embed', 'kernel')) == 'patch_embed.proj.weight'
  assert key(('encoder_level1_0', 'norm2', 'scale')) == 'encoder_level1.0.norm2.body.weight'
  assert (key(('decoder_level3_11', 'attn', 'norm', 'bias'))
          == 'decoder_level3.11.attn.norm.body.bias')
  assert key(('refinement_3', 'ffn', 'fft')) == 'refinement.3.ffn.fft'
  assert key(('up3_2', 'kernel')) == 'up3_2.body.1.weight'
  assert key(('fuse2', 'att_channel', 'norm2', 'scale')) == 'fuse2.att_channel.norm2.body.weight'
  assert key(('fuse1', 'conv2', 'bias')) == 'fuse1.conv2.bias'
