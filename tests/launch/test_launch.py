"""The launch scripts: usage, the commands they would run, and failure handling."""

import os
import shlex
import subprocess
import time

import pytest

from helpers import REPO

SCRIPTS = ('local.sh', 'multiprocess_cpu.sh', 'slurm.sbatch', 'tpu_pod.sh')
TIMEOUT_S = 60


def run_script(name, *args, env=None, cwd=REPO):
  """Runs launch/NAME (or the script at the path NAME) from `cwd`."""
  path = name if os.path.isabs(name) or name.startswith('.') else REPO / 'launch' / name
  return subprocess.run([str(path), *args], cwd=cwd, env={**os.environ, **(env or {})},
                        capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def header(path):
  """The comment block after the shebang, as --help should print it."""
  lines = []
  for line in path.read_text().splitlines()[1:]:
    if line != '#' and not line.startswith('# '):
      break
    lines.append(line[2:])
  return lines


def commands(stdout):
  """The printed command lines, split as the shell would."""
  return [shlex.split(line) for line in stdout.splitlines()]


@pytest.mark.parametrize('name', SCRIPTS)
def test_help_prints_usage(name):
  for flag in ('--help', '-h'):
    proc = run_script(name, flag)
    assert proc.returncode == 0, proc.stderr
    assert f'launch/{name}' in proc.stdout and 'Usage:' in proc.stdout
    assert 'CONFIG WORKDIR' in proc.stdout


@pytest.mark.parametrize('name', SCRIPTS)
def test_help_prints_the_whole_header_and_none_of_the_code(name):
  proc = run_script(name, '--help')
  lines = proc.stdout.splitlines()
  assert lines == header(REPO / 'launch' / name)
  text = (REPO / 'launch' / name).read_text().splitlines()
  assert text[1:len(lines) + 1] == [f'# {line}'.rstrip() for line in lines]
  assert text[len(lines) + 1].startswith(('source ', '#SBATCH '))  # the first line of code
  assert lines[0].startswith('Train ') and any(line.startswith('Usage:') for line in lines)


def test_help_follows_an_edited_header(tmp_path):
  launch = tmp_path / 'launch'
  launch.mkdir()
  (launch / 'common.sh').write_text((REPO / 'launch' / 'common.sh').read_text())
  text = (REPO / 'launch' / 'tpu_pod.sh').read_text().replace(
      '# Usage:', '# A new line of help.\n#\n# Usage:', 1)
  script = launch / 'tpu_pod.sh'
  script.write_text(text)
  script.chmod(0o755)
  lines = run_script(str(script), '-h').stdout.splitlines()
  assert lines == header(script) and 'A new line of help.' in lines and '' in lines
  assert lines[-1].startswith('with the same WORKDIR to resume.')


@pytest.mark.parametrize('name,args', [
    ('local.sh', ['c.py', 'w']), ('multiprocess_cpu.sh', ['1', '1', 'c.py', 'w']),
    ('slurm.sbatch', ['c.py', 'w']), ('tpu_pod.sh', ['tpu', 'zone', 'c.py', 'w'])])
def test_scripts_find_common_sh_from_another_working_directory(tmp_path, name, args):
  for script, cwd in ((REPO / 'launch' / name, tmp_path), (f'./{name}', REPO / 'launch')):
    proc = run_script(str(script), '--dry-run', *args, cwd=cwd,
                      env={'PYTHON': 'py', 'COORDINATOR_PORT': '1'})
    assert proc.returncode == 0, proc.stderr
    assert '-m deblur_jax.main --config=c.py --workdir=w' in proc.stdout


def test_local_dry_run_prints_the_training_command():
  proc = run_script('local.sh', '--dry-run', 'configs/mimo.py:tiny', '/tmp/w d', '--config.seed=7',
                    env={'PYTHON': 'py'})
  assert proc.returncode == 0, proc.stderr
  assert commands(proc.stdout) == [['py', '-m', 'deblur_jax.main', '--config=configs/mimo.py:tiny',
                                    '--workdir=/tmp/w d', '--config.seed=7']]


def test_slurm_copy_reads_common_sh_from_the_submit_dir_or_deblur_launch_dir(tmp_path):
  """sbatch runs a copy of the script from its spool folder."""
  spool = tmp_path / 'spool'
  spool.mkdir()
  copy = spool / 'slurm_script'
  copy.write_text((REPO / 'launch' / 'slurm.sbatch').read_text())
  copy.chmod(0o755)
  for env in ({'SLURM_SUBMIT_DIR': str(REPO)},
              {'SLURM_SUBMIT_DIR': str(tmp_path), 'DEBLUR_LAUNCH_DIR': str(REPO / 'launch')}):
    proc = run_script(str(copy), '--dry-run', 'c.py', 'w', cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('srun --kill-on-bad-exit=1 ')
  proc = run_script(str(copy), '--dry-run', 'c.py', 'w', cwd=tmp_path,
                    env={'SLURM_SUBMIT_DIR': str(tmp_path)})
  assert proc.returncode == 2 and 'set DEBLUR_LAUNCH_DIR' in proc.stderr


@pytest.mark.parametrize('name', SCRIPTS)
def test_missing_arguments_print_usage_and_fail(name):
  proc = run_script(name, 'configs/mimo.py:tiny')
  assert proc.returncode == 2
  assert 'Usage:' in proc.stderr


def test_multiprocess_cpu_dry_run_prints_one_command_per_process():
  proc = run_script('multiprocess_cpu.sh', '--dry-run', '3', '2', 'configs/mimo.py:tiny',
                    '/tmp/w d', '--config.seed=7',
                    env={'XLA_FLAGS': '--xla_cpu_enable_fast_math=false',
                         'COORDINATOR_PORT': '12345', 'PYTHON': 'py'})
  assert proc.returncode == 0, proc.stderr
  lines = commands(proc.stdout)
  assert lines[-1] == ['wait']
  assert len(lines) == 4
  for i, line in enumerate(lines[:3]):
    assert line[:5] == ['env', 'XLA_FLAGS=--xla_cpu_enable_fast_math=false '
                        '--xla_force_host_platform_device_count=2',
                        'JAX_COORDINATOR_BIND_ADDRESS=127.0.0.1:12345',
                        'JAX_ENABLE_COMPILATION_CACHE=false', 'py']
    args = line[5:]
    assert args[:2] == ['-m', 'deblur_jax.main']
    assert {'--config=configs/mimo.py:tiny', '--workdir=/tmp/w d', '--distributed',
            '--coordinator_address=127.0.0.1:12345', '--num_processes=3',
            f'--process_id={i}', '--config.seed=7'} <= set(args)
    log = ['>', f'/tmp/w d/logs/process_{i}.log', '2>&1'] if i else []
    assert args[-len(log) - 1:] == log + ['&']


def test_multiprocess_cpu_picks_a_free_port():
  proc = run_script('multiprocess_cpu.sh', '--dry-run', '2', '1', 'c.py', 'w')
  assert proc.returncode == 0, proc.stderr
  addresses = {a for line in commands(proc.stdout) for a in line
               if a.startswith('--coordinator_address=127.0.0.1:')}
  assert len(addresses) == 1 and int(addresses.pop().rsplit(':', 1)[1]) > 0


@pytest.mark.parametrize('n,m', [('0', '2'), ('2', 'x')])
def test_multiprocess_cpu_rejects_bad_counts(n, m):
  proc = run_script('multiprocess_cpu.sh', n, m, 'configs/mimo.py:tiny', '/tmp/w')
  assert proc.returncode == 2
  assert 'must be positive integers' in proc.stderr


def test_multiprocess_cpu_stops_all_when_one_fails(tmp_path):
  """Process 1 fails at once; the others would run for a minute. The script ends
  within seconds with process 1's status and leaves no process behind."""
  fake_python = tmp_path / 'fake_python'
  fake_python.write_text('#!/usr/bin/env bash\n'
                         'echo "$$" >> "$PIDS"\n'
                         'if [[ " $* " == *" --process_id=1 "* ]]; then\n'
                         '  until [[ $(wc -l < "$PIDS") == 3 ]]; do sleep 0.05; done\n'
                         '  exit 7\n'
                         'fi\n'
                         'exec sleep 60\n')
  fake_python.chmod(0o755)
  pids = tmp_path / 'pids'
  start = time.monotonic()
  proc = run_script('multiprocess_cpu.sh', '3', '1', 'c.py', str(tmp_path / 'w'),
                    env={'PYTHON': str(fake_python), 'COORDINATOR_PORT': '1', 'PIDS': str(pids)})
  assert time.monotonic() - start < 30
  assert proc.returncode == 7
  assert 'Process 1 failed with exit status 7' in proc.stderr
  assert f'{tmp_path}/w/logs/process_i.log' in proc.stderr
  started = [int(p) for p in pids.read_text().split()]
  assert len(started) == 3
  time.sleep(0.5)
  for pid in started:
    assert not os.path.exists(f'/proc/{pid}') or 'Z' in _state(pid), f'{pid} still runs'


def _state(pid):
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().split(')')[-1].split()[0]
  except FileNotFoundError:
    return 'Z'


def test_slurm_dry_run_prints_the_srun_line():
  proc = run_script('slurm.sbatch', '--dry-run', 'configs/mimo.py', '/shared/run',
                    '--config.train.batch_size=32',
                    env={'PYTHON': 'py', 'SLURM_TMPDIR': '/local/job 7'})
  assert proc.returncode == 0, proc.stderr
  assert commands(proc.stdout) == [[
      'srun', '--kill-on-bad-exit=1', 'py', '-m', 'deblur_jax.main',
      '--config=configs/mimo.py', '--workdir=/shared/run', '--distributed',
      '--config.data.cache_dir=/local/job 7/deblur_jax_cache',
      '--config.train.batch_size=32']]


def test_slurm_puts_the_decoded_images_on_node_local_disk():
  for env, expected in (({'SLURM_TMPDIR': ''}, '/tmp/deblur_jax_cache'),
                        ({'DEBLUR_CACHE_DIR': '/ssd/c'}, '/ssd/c')):
    proc = run_script('slurm.sbatch', '--dry-run', 'c.py', 'w', env={'PYTHON': 'py', **env})
    assert proc.returncode == 0, proc.stderr
    assert f'--config.data.cache_dir={expected}' in commands(proc.stdout)[0]


def test_slurm_script_asks_for_one_task_per_gpu():
  lines = (REPO / 'launch' / 'slurm.sbatch').read_text().splitlines()
  sbatch = dict(line[len('#SBATCH '):].split('=', 1) for line in lines
                if line.startswith('#SBATCH --'))
  assert int(sbatch['--nodes']) > 1
  assert sbatch['--ntasks-per-node'] == sbatch['--gpus-per-node']


def test_tpu_pod_dry_run_prints_the_gcloud_command():
  proc = run_script('tpu_pod.sh', '--dry-run', 'my-v4-32', 'us-central2-b', 'configs/mimo.py',
                    '/mnt/runs/a b', '--config.train.batch_size=64',
                    env={'DEBLUR_DIR': '/opt/deblur', 'PYTHON': 'py'})
  assert proc.returncode == 0, proc.stderr
  [line] = commands(proc.stdout)
  assert line[:7] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-v4-32',
                      '--zone=us-central2-b']
  assert line[7] == '--worker=all'
  assert line[8].startswith('--command=')
  remote = line[8][len('--command='):]
  cd, train = remote.split(' && ')
  assert cd == 'cd /opt/deblur'
  assert shlex.split(train) == ['py', '-m', 'deblur_jax.main', '--config=configs/mimo.py',
                                '--workdir=/mnt/runs/a b', '--distributed',
                                '--config.train.batch_size=64']
