"""Importing deblur_jax changes nothing in the process; the tools' settings are explicit."""

import json
import os
import subprocess
import sys

import pytest

from deblur_jax.cli import runtime
from helpers import REPO

# Every library module: all sub-packages, and the shared top-level modules. The
# command-line tools are left out only because several define the same absl flags.
_IMPORT_ALL_LIBRARY_MODULES = """
import importlib, json, os, pkgutil
# TensorFlow sets variables of its own when imported (TF2_BEHAVIOR, ...): import the
# dependencies first, so that what is compared is what deblur_jax itself does.
import clu.metric_writers, flax, jax, optax, orbax.checkpoint, tensorflow, tensorflow_datasets
before = dict(os.environ)
import deblur_jax
names = []
for package in ('core', 'cli', 'configs', 'models', 'data', 'training', 'evaluation', 'inference',
                'weights', 'parallel', 'profiling'):
  module = importlib.import_module(f'deblur_jax.{package}')
  names += [m.name for m in pkgutil.walk_packages(module.__path__, f'deblur_jax.{package}.')]
for name in names:
  importlib.import_module(name)
changed = {k: (before.get(k), os.environ.get(k))
           for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}
print(json.dumps({'modules': len(names), 'changed': changed}))
"""


def test_importing_every_library_module_leaves_the_environment_unchanged():
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'TF_CPP_MIN_LOG_LEVEL')}
  proc = subprocess.run([sys.executable, '-c', _IMPORT_ALL_LIBRARY_MODULES], cwd=REPO,
                        env=dict(env, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['modules'] > 40
  assert result['changed'] == {}


X86 = {'machine': 'x86_64', 'model': 'AMD EPYC', 'cores': 2, 'isa': ['avx2', 'fma']}
ARM = {'machine': 'aarch64', 'model': 'Neoverse-V2', 'cores': 4, 'isa': ['asimd', 'sve']}


def test_training_on_x86_turns_ynnpack_fusions_off_unless_the_user_chose():
  assert runtime.xla_flags_for('', 'train', X86) == '--xla_cpu_experimental_ynn_fusion_type='
  assert runtime.xla_flags_for('--a=1', 'train', X86) == (
      '--a=1 --xla_cpu_experimental_ynn_fusion_type=')
  chosen = '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'
  assert runtime.xla_flags_for(chosen, 'train', X86) == chosen


def test_inference_and_unmeasured_cpus_keep_jaxs_defaults():
  assert runtime.xla_flags_for('--a=1', 'inference', X86) == '--a=1'
  assert runtime.xla_flags_for('', 'train', ARM) == ''
  with pytest.raises(ValueError, match='workload'):
    runtime.xla_flags_for('', 'training', X86)


def test_cpu_description_reads_the_model_and_the_isa_extensions(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC 9B45\n'
                     'flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n\n'
                     'processor\t: 1\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu\n')
  cpu = runtime.cpu_description(str(cpuinfo))
  assert cpu['model'] == 'AMD EPYC 9B45'
  assert cpu['isa'] == ['avx2', 'fma', 'avx512f', 'avx512bw']
  assert runtime.cpu_description(str(tmp_path / 'missing'))['isa'] == []


def test_configure_process_sets_the_flags_and_keeps_the_users(monkeypatch):
  monkeypatch.setattr(runtime, 'cpu_description', lambda: X86)
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '0')
  runtime.configure_process(workload=None, hide_accelerators=False)
  assert os.environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=2'
  runtime.configure_process(hide_accelerators=False)
  assert os.environ['XLA_FLAGS'] == ('--xla_force_host_platform_device_count=2 '
                                     '--xla_cpu_experimental_ynn_fusion_type=')
  assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '0'
