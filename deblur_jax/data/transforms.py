"""TensorFlow ops of the input pipelines: decoding, example indexing, crops, blur.

Every training example is a pure function of (seed, global example index g):
g picks the image through a per-epoch stateless permutation, and seeds the
crop, flip and blur. So a run resumed at step s restarts exactly at example
s * global_batch (with config.data.stages, at the example of its stage: stages.py),
and each process computes its own disjoint slice of every global batch, whatever
the number of processes.
"""

from typing import Optional

import tensorflow as tf

_INT64_MAX = 2 ** 62


def decode_image_bytes(encoded, dtype=tf.float32):
  """Any PNG (8 or 16 bit, gray, palette, RGBA), JPEG or BMP as HxWx3 RGB: float32 in
  [0, 1], or the stored levels as uint8 or uint16."""
  image = tf.io.decode_image(encoded, channels=3, dtype=dtype, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_image(path, dtype=tf.float32):
  """The image file at `path`, as `decode_image_bytes`."""
  return decode_image_bytes(tf.io.read_file(path), dtype)


def decode_levels(path, sixteen_bit, dtype):
  """The image file at `path` as HxWx3 levels of `dtype`, the training pipeline's
  wire format: uint8, the 8-bit levels as stored (for a set without 16-bit PNGs),
  or uint16, a 16-bit PNG's levels as stored and other images' 8-bit levels x 257
  (exact: TensorFlow widens 8-bit PNGs so). `sixteen_bit`: whether the file is a
  16-bit PNG (a bool tensor; see pairs.level_format)."""
  if tf.as_dtype(dtype) == tf.uint8:
    return decode_image(path, tf.uint8)
  return tf.cond(sixteen_bit, lambda: decode_image(path, tf.uint16),
                 lambda: tf.cast(decode_image(path, tf.uint8), tf.uint16) * 257)


def global_example_indices(start_step: int, global_batch: int, rows: range, *,
                           first_example: int = 0,
                           num_steps: Optional[int] = None) -> tf.data.Dataset:
  """The global indices of this process's examples, from global batch `start_step` on
  (the steps already taken): `num_steps` batches, or endlessly (None).

  Global batch s holds examples first_example + s * global_batch ... first_example +
  (s + 1) * global_batch - 1 (first_example: that of the stage, stages.py); this
  process supplies those of its `rows` of the batch.
  """
  local_batch = len(rows)

  def to_global(k):
    step, j = k // local_batch, k % local_batch
    return first_example + step * global_batch + rows.start + j

  stop = _INT64_MAX if num_steps is None else (start_step + num_steps) * local_batch
  return tf.data.Dataset.range(start_step * local_batch, stop).map(to_global)


def shuffled_index(g, num_items: int, seed: int):
  """Item of example g: epoch g // n visits all n items in its own random order."""
  g = tf.cast(g, tf.int64)
  epoch, position = g // num_items, g % num_items
  key = tf.stack([tf.constant(seed, tf.int64), epoch])
  return tf.random.experimental.index_shuffle(position, key, num_items - 1)


def example_seeds(g, seed: int, count: int):
  """`count` independent stateless seeds (shape [2]) for example g."""
  base = tf.stack([tf.constant(seed, tf.int64), tf.cast(g, tf.int64)])
  return tf.unstack(tf.random.experimental.stateless_split(base, count))


def crop_window(shape, size: int, hflip: bool, crop_seed, flip_seed):
  """(top, left, flip) of `random_crop_flip` for images of `shape` [H, W, C], int32.

  The draws of tf.image.stateless_random_crop and stateless_random_flip_left_right
  with the same seeds, so that crops can be cut from images held elsewhere (see
  cache.py) without changing a single example.
  """
  shape = tf.cast(shape, tf.int32)
  tf.debugging.assert_greater_equal(shape[:2], size,
                                    message=f'Image smaller than the {size}x{size} crop')
  limit = shape - tf.stack([size, size, shape[2]]) + 1
  offset = tf.random.stateless_uniform([3], crop_seed, maxval=tf.int32.max,
                                       dtype=tf.int32) % limit
  flip = tf.constant(False)
  if hflip:
    flip = tf.random.stateless_uniform([], flip_seed, minval=0, maxval=1.0) < 0.5
  return offset[0], offset[1], flip


def random_crop_flip(images, size: int, hflip: bool, crop_seed, flip_seed):
  """The same random size x size crop (and horizontal flip) of HxWxC `images`."""
  top, left, flip = crop_window(tf.shape(images), size, hflip, crop_seed, flip_seed)
  images = images[top:top + size, left:left + size]
  if hflip:
    images = tf.cond(flip, lambda: tf.reverse(images, [1]), lambda: images)
  return tf.ensure_shape(images, [size, size, images.shape[-1]])


def augment_seed(g, seed: int):
  """The stateless seed of example g's flips_rot90 turn: folded from (seed, g), so
  the sources' own seeds (example_seeds) and their examples stay as they are."""
  base = tf.stack([tf.constant(seed, tf.int64), tf.cast(g, tf.int64)])
  return tf.random.experimental.stateless_fold_in(base, 0x0a06)


def turn_draws(seed):
  """(vertical flip, transpose) of a random turn: bool tensors, each True with
  probability 1/2 (with the source's horizontal flip, a random flip or 90-degree
  rotation: BasicSR's `augment(hflip, rotation)`)."""
  return tf.unstack(tf.random.stateless_uniform([2], seed) < 0.5)


def turn(example: dict, vflip, transpose) -> dict:
  """Every image of `example` (square, HxWxC) flipped vertically if `vflip`, then
  transposed if `transpose` (bool tensors); cache.DecodedPairs.cut turns the same way."""

  def turn_image(image):
    image = tf.cond(vflip, lambda: tf.reverse(image, [0]), lambda: image)
    return tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)

  return {key: tf.ensure_shape(turn_image(image), image.shape) for key, image in example.items()}


def blur_valid(image, kernel):
  """Convolves HxWx3 `image` with `kernel` (k x k), keeping only full windows.

  The output is (H - k + 1) x (W - k + 1); its sharp counterpart is the
  centre crop of the input (see `centre_crop`).
  """
  kernel = tf.convert_to_tensor(kernel, tf.float32)[::-1, ::-1]  # convolution, not correlation
  depthwise = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  blurred = tf.nn.depthwise_conv2d(image[None], depthwise, [1, 1, 1, 1], 'VALID')
  return blurred[0]


def centre_crop(image, margin):
  """Removes `margin` pixels from every side of HxWxC `image`."""
  return image[margin:tf.shape(image)[0] - margin, margin:tf.shape(image)[1] - margin]


def quantize_8bit(image):
  """Rounds [0, 1] values to the 256 levels an 8-bit image file stores."""
  return tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0) / 255.0
