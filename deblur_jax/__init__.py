"""deblur_jax: image-deblurring networks in JAX/Flax."""

import os

__version__ = '0.1.0'


def _prefer_xla_cpu_convolutions() -> None:
  """On CPUs, XLA hands convolutions to YNNPACK, whose 3x3 weight gradients run
  2-3x slower than XLA's own kernels here, doubling a MIMO-UNet training step
  (BENCHMARKS.md). Turn that off unless the user set the flag themselves. It
  takes effect if jax has not started its CPU backend yet; it does not affect
  GPUs or TPUs."""
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_cpu_experimental_ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} --xla_cpu_experimental_ynn_fusion_type='.strip()


_prefer_xla_cpu_convolutions()
