"""Process-wide settings that the command-line tools apply before JAX or
TensorFlow start. Library modules never change the environment when imported;
a program that imports deblur_jax as a library calls `configure_process` itself
(first thing, before it touches a device) if it wants the same behaviour.

- XLA on CPUs: whether convolutions go to YNNPACK or to XLA's own kernels is
  set by `--xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS. YNNPACK's 3x3
  weight gradients ran 2-3x slower than XLA's kernels on the machines measured
  in BENCHMARKS.md, so the tools turn it off unless XLA_FLAGS already names
  the flag. It only takes effect before JAX starts its CPU backend and does
  not affect GPUs or TPUs.
- TensorFlow serves only the tf.data input pipelines: it must not see (and
  take memory on) the accelerators that JAX uses. tensorflow-cpu sees none;
  a full TensorFlow install is told so here.
- TensorFlow's C++ start-up banner is quieted (TF_CPP_MIN_LOG_LEVEL=2).
"""

import os

YNN_FLAG = 'xla_cpu_experimental_ynn_fusion_type'


def xla_flags_preferring_xla_cpu_convolutions(flags: str) -> str:
  """`flags` (an XLA_FLAGS value) with YNNPACK fusions off, unless it sets them."""
  if YNN_FLAG in flags:
    return flags
  return f'{flags} --{YNN_FLAG}='.strip()


def hide_accelerators_from_tensorflow() -> None:
  """Keeps TensorFlow (imported here) off every GPU; tf.data runs on the host."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')


def configure_process(*, hide_accelerators: bool = True) -> None:
  """What every command-line tool does first: XLA CPU flags, TensorFlow logging,
  and (with `hide_accelerators`) TensorFlow kept off the accelerators."""
  os.environ['XLA_FLAGS'] = xla_flags_preferring_xla_cpu_convolutions(
      os.environ.get('XLA_FLAGS', ''))
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if hide_accelerators:
    hide_accelerators_from_tensorflow()
