"""Process-wide settings that the command-line tools apply before JAX or
TensorFlow start. Library modules never change the environment when imported;
a program that imports deblur_jax as a library calls `configure_process` itself
(first thing, before it touches a device) if it wants the same behaviour.

- XLA on CPUs: whether convolutions go to YNNPACK or to XLA's own (Eigen)
  kernels is set by `--xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS.
  The choice depends on the CPU and on the workload, and is made here from the
  CPU detected at run time (`cpu_description`) and what the tool does
  (`workload`), as measured in BENCHMARKS.md ("Convolution kernels per CPU"):
  on every x86 CPU measured (Intel Xeon with AVX-512 and AMX; AMD EPYC Zen 5
  with AVX-512; the same EPYC capped at AVX2; AMD EPYC Zen 4), XLA's kernels
  trained MIMO-UNet faster (YNNPACK's 3x3 weight gradients are 1.5-2x slower;
  the whole step 1.3x on the Zen 4), while YNNPACK ran
  inference faster. So training tools turn YNNPACK's fusions off on x86 and
  inference tools keep JAX's defaults; on other CPUs (ARM: not measured)
  JAX's defaults stay. A user who names the flag in XLA_FLAGS keeps it.
  It only takes effect before JAX starts its CPU backend and does not affect
  GPUs or TPUs.
- TensorFlow serves only the tf.data input pipelines: it must not see (and
  take memory on) the accelerators that JAX uses. tensorflow-cpu sees none;
  a full TensorFlow install is told so here.
- TensorFlow's C++ start-up banner is quieted (TF_CPP_MIN_LOG_LEVEL=2).
"""

import os
import platform
from typing import Literal, Optional, get_args

YNN_FLAG = 'xla_cpu_experimental_ynn_fusion_type'
XLA_CPU_CONVOLUTIONS = f'--{YNN_FLAG}='  # the empty list: no YNNPACK fusions

Workload = Literal['train', 'inference']
WORKLOADS = get_args(Workload)

# The instruction-set extensions that decide which kernels are fast; reported
# with every benchmark figure.
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni',
             'avx512_bf16', 'avx512_fp16', 'amx_bf16', 'amx_tile', 'asimd', 'sve')


def cpu_description(cpuinfo_path: str = '/proc/cpuinfo') -> dict:
  """{'machine', 'model', 'cores', 'isa'}: the host CPU as the kernel reports it
  (Linux /proc/cpuinfo; elsewhere only what `platform` knows)."""
  model, flags = platform.processor() or '', set()
  try:
    with open(cpuinfo_path, encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip().lower()
        if key in ('model name', 'cpu model', 'hardware') and not model:
          model = value.strip()
        elif key in ('flags', 'features') and not flags:
          flags = set(value.split())
  except OSError:
    pass
  return {'machine': platform.machine(), 'model': model or 'unknown', 'cores': os.cpu_count(),
          'isa': [flag for flag in ISA_FLAGS if flag in flags]}


def xla_cpu_flags(workload: Workload, cpu: dict) -> str:
  """The XLA_FLAGS entry deblur_jax chooses for `workload` on `cpu` ('' for JAX's defaults)."""
  if workload not in WORKLOADS:
    raise ValueError(f'workload must be one of {WORKLOADS}, got {workload!r}.')
  is_x86 = cpu['machine'].lower() in ('x86_64', 'amd64')
  return XLA_CPU_CONVOLUTIONS if is_x86 and workload == 'train' else ''


def xla_flags_for(flags: str, workload: Workload, cpu: Optional[dict] = None) -> str:
  """`flags` (an XLA_FLAGS value) with deblur_jax's CPU convolution choice added,
  unless `flags` already sets the YNNPACK flag (the user's choice wins)."""
  if YNN_FLAG in flags:
    return flags
  chosen = xla_cpu_flags(workload, cpu or cpu_description())
  return f'{flags} {chosen}'.strip()


def configure_xla_cpu(workload: Workload) -> None:
  """Sets XLA_FLAGS for `workload`; call before JAX starts its CPU backend."""
  os.environ['XLA_FLAGS'] = xla_flags_for(os.environ.get('XLA_FLAGS', ''), workload)


def hide_accelerators_from_tensorflow() -> None:
  """Keeps TensorFlow (imported here) off every GPU; tf.data runs on the host."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')


def configure_process(*, workload: Optional[Workload] = 'train',
                      hide_accelerators: bool = True) -> None:
  """What every command-line tool does first: XLA CPU flags for `workload` (None:
  the tool sets them itself, with `configure_xla_cpu`, once it knows), TensorFlow
  logging, and (with `hide_accelerators`) TensorFlow kept off the accelerators."""
  if workload is not None:
    configure_xla_cpu(workload)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if hide_accelerators:
    hide_accelerators_from_tensorflow()
