"""TensorFlow ops of the pipelines: decoding, example indexing, crops, blur."""

import numpy as np
import tensorflow as tf
from PIL import Image

from deblur_jax.data import transforms
from deblur_jax.data.degrade import kernels


def test_an_epoch_visits_every_image_once():
  seen = [int(transforms.shuffled_index(g, 7, seed=3)) for g in range(14)]
  assert sorted(seen[:7]) == list(range(7)) and sorted(seen[7:]) == list(range(7))
  assert seen[:7] != seen[7:]

def test_decode_handles_grayscale_rgba_and_16_bit(tmp_path):
  gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
  Image.fromarray(gray).save(tmp_path / 'gray.png')
  Image.fromarray(np.dstack([gray] * 3 + [np.zeros_like(gray)])).save(tmp_path / 'rgba.png')
  Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / 'deep.png')
  for name in ('gray', 'rgba', 'deep'):
    image = transforms.decode_image(str(tmp_path / f'{name}.png')).numpy()
    assert image.shape == (6, 8, 3), name
    np.testing.assert_allclose(image[..., 1], gray / 255.0, atol=1e-6, err_msg=name)

def test_blur_valid_with_a_delta_kernel_is_a_centre_crop():
  image = tf.random.uniform((9, 11, 3), seed=0)
  delta = kernels.pad_kernel(np.ones((1, 1), np.float32), 5)
  np.testing.assert_allclose(transforms.blur_valid(image, delta),
                             transforms.centre_crop(image, 2), atol=1e-6)

def test_blur_valid_convolves_rather_than_correlates():
  image = np.zeros((5, 5, 3), np.float32)
  image[2, 2] = 1.0
  kernel = np.zeros((3, 3), np.float32)
  kernel[0, 2] = 1.0  # light to the upper right
  out = transforms.blur_valid(image, kernel).numpy()  # 3x3: a convolution reproduces the kernel
  np.testing.assert_array_equal(out[..., 0], kernel)


def test_crop_windows_are_those_of_tf_image():
  for k in range(20):
    images = tf.random.stateless_uniform([20 + k, 40 - k, 6], [k, 0])
    crop_seed, flip_seed = transforms.example_seeds(k, 3, 2)
    expected = tf.image.stateless_random_flip_left_right(
        tf.image.stateless_random_crop(images, [13, 13, 6], seed=crop_seed), seed=flip_seed)
    got = transforms.random_crop_flip(images, 13, True, crop_seed, flip_seed)
    np.testing.assert_array_equal(got, expected)
