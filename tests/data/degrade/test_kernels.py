"""Blur kernels: Gaussians, linear motion, defocus disks and camera shake."""

import numpy as np
import pytest

from deblur_jax.data.degrade import kernels


@pytest.mark.parametrize('family', kernels.KERNEL_FAMILIES)
@pytest.mark.parametrize('size', [None, 15, 21])
def test_every_family_gives_a_float32_kernel_of_the_requested_size_summing_to_one(family, size):
  kernel, params = kernels.sample_kernel(np.random.default_rng(0), family, size)
  own = kernels.GAUSSIAN_FAMILIES.get(
      family, (1 if family == 'identity' else kernels.DEFAULT_KERNEL_SIZE,))[0]
  assert kernel.shape == (size or own,) * 2
  assert kernel.dtype == np.float32
  assert kernel.min() >= 0
  np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-5)
  assert isinstance(params, dict)


def test_random_kernel_is_the_kernel_that_sample_kernel_draws():
  np.testing.assert_array_equal(kernels.random_kernel(np.random.default_rng(3), 'shake', 15),
                                kernels.sample_kernel(np.random.default_rng(3), 'shake', 15)[0])


def test_unknown_family_and_too_small_size_are_errors():
  with pytest.raises(ValueError, match="Unknown kernel family 'box'"):
    kernels.random_kernel(np.random.default_rng(0), 'box')
  with pytest.raises(ValueError, match='at least 11'):
    kernels.random_kernel(np.random.default_rng(0), 'gauss11', 9)


def test_shake_psfs_are_reproducible_for_a_seed_and_differ_across_seeds():
  first = [kernels.random_kernel(np.random.default_rng(s), 'shake', 21) for s in range(3)]
  again = [kernels.random_kernel(np.random.default_rng(s), 'shake', 21) for s in range(3)]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(first[0], first[1])
  assert not np.allclose(first[1], first[2])


def test_trajectory_has_the_requested_length_and_is_centred_in_its_canvas():
  path = kernels.camera_shake_trajectory(np.random.default_rng(0), trajectory_size=64,
                                         anxiety=0.01, num_samples=500, max_total_length=40)
  assert path.shape == (500, 2)
  np.testing.assert_allclose(np.linalg.norm(np.diff(path, axis=0), axis=1).sum(), 40, rtol=1e-6)
  np.testing.assert_allclose((path.min(0) + path.max(0)) / 2, [31.5, 31.5])


def test_zero_anxiety_gives_a_straight_line():
  path = kernels.camera_shake_trajectory(np.random.default_rng(0), anxiety=0.0,
                                         num_samples=200, max_total_length=30)
  steps = np.diff(path, axis=0)
  np.testing.assert_allclose(steps, np.broadcast_to(steps[0], steps.shape), atol=1e-9)


def test_psf_centre_of_mass_is_the_kernel_centre_and_longer_exposures_spread_more():
  path = kernels.camera_shake_trajectory(np.random.default_rng(1), anxiety=0.005)
  ys, xs = np.mgrid[:65, :65]
  supports = []
  for exposure in (0.1, 0.5, 1.0):
    psf = kernels.trajectory_to_psf(path, 65, exposure)
    assert psf.dtype == np.float32
    np.testing.assert_allclose(psf.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose([(psf * xs).sum(), (psf * ys).sum()], [32, 32], atol=1e-3)
    supports.append(np.count_nonzero(psf))
  assert supports[0] < supports[1] < supports[2]


def test_a_path_longer_than_the_psf_is_an_error():
  path = kernels.camera_shake_trajectory(np.random.default_rng(0), anxiety=0.0)
  with pytest.raises(ValueError, match='cannot hold'):
    kernels.trajectory_to_psf(path, 31)


def test_defocus_radius_zero_is_a_delta():
  kernel = kernels.defocus_kernel(0, 7)
  expected = np.zeros((7, 7), np.float32)
  expected[3, 3] = 1
  np.testing.assert_array_equal(kernel, expected)


def test_defocus_disk_is_round_flat_inside_and_anti_aliased_at_its_edge():
  kernel = kernels.defocus_kernel(4.0, 11)
  np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(kernel, kernel.T, atol=1e-9)
  np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-9)
  assert kernel[5, 5] == kernel[5, 7] == kernel.max()  # fully covered pixels
  assert 0 < kernel[5, 9] < kernel.max()  # the edge pixel is partly covered
  assert kernel[5, 10] == 0 and kernel[0, 0] == 0
  # The covered area is the disk's: pi r^2 pixels' worth of the centre value.
  np.testing.assert_allclose(1.0 / kernel.max(), np.pi * 16, rtol=0.01)
