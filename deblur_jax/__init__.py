"""deblur_jax: image-deblurring networks in JAX/Flax.

Importing the package changes nothing in the process: the command-line tools
set XLA flags and keep TensorFlow off the accelerators (`deblur_jax.cli.runtime`).
"""

__version__ = '0.1.0'
