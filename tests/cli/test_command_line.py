"""The tools' shared command line: --config finds the shipped configs from any folder."""

import os
import subprocess
import sys

import pytest

from deblur_jax.cli import command_line
from helpers import REPO, run_tool


def test_a_configs_path_that_is_not_here_names_the_shipped_config(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = command_line.locate_config_files(['prog', '--config=configs/mimo.py:plus', '--workdir=w'])
  config_file, variants = argv[1][len('--config='):].split(':')
  assert os.path.isfile(config_file) and os.path.isabs(config_file)
  assert os.path.samefile(config_file, REPO / 'deblur_jax' / 'configs' / 'mimo.py')
  assert variants == 'plus' and argv[2] == '--workdir=w'


def test_a_config_file_that_exists_is_kept(tmp_path, monkeypatch):
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'mimo.py').write_text('')
  monkeypatch.chdir(tmp_path)
  assert command_line.locate_config_files(['prog', '--config=configs/mimo.py']) == [
      'prog', '--config=configs/mimo.py']


def test_an_unknown_config_name_stays_an_error_naming_it(tmp_path):
  proc = run_tool('deblur_jax.main', '--config=configs/nonexistent.py',
                  f'--workdir={tmp_path}', cwd=tmp_path)
  assert proc.returncode != 0
  assert 'configs/nonexistent.py' in proc.stderr and 'Traceback' not in proc.stderr
  assert ("the shipped configs are ['configs/autoencoder.py', 'configs/evssm.py', "
          "'configs/fftformer.py', 'configs/gan.py'," in proc.stderr)


@pytest.fixture(scope='module')
def installed_package(tmp_path_factory):
  """The package as `pip install .` installs it (not editable), in its own folder."""
  root = tmp_path_factory.mktemp('installed')
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '-w',
                  str(root / 'wheel'), str(REPO)], check=True, capture_output=True)
  wheel, = (root / 'wheel').glob('deblur_jax-*.whl')
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--target',
                  str(root / 'site'), str(wheel)], check=True, capture_output=True)
  return root / 'site'


def test_pip_install_ships_the_configs(installed_package):
  shipped = sorted(p.name for p in (installed_package / 'deblur_jax' / 'configs').glob('*.py'))
  assert shipped == sorted(p.name for p in (REPO / 'deblur_jax' / 'configs').glob('*.py'))
  templates = installed_package / 'deblur_jax' / 'evaluation' / 'templates'
  assert sorted(p.name for p in templates.iterdir()) == sorted(
      p.name for p in (REPO / 'deblur_jax' / 'evaluation' / 'templates').iterdir())


def test_the_installed_main_runs_a_shipped_config_from_another_folder(installed_package,
                                                                    tmp_path):
  """Config files import deblur_jax.configs.common: that works from the installed copy,
  with nothing added to sys.path."""
  proc = run_tool('deblur_jax.main', '--config=configs/mimo.py:tiny', f'--workdir={tmp_path / "w"}',
                  '--mode=eval', cwd=tmp_path, pythonpath=installed_package)
  assert proc.returncode == 2, proc.stderr[-2000:]
  # The config loaded; there is nothing to evaluate.
  assert 'No checkpoint in' in proc.stderr and 'train first' in proc.stderr
  assert str(installed_package / 'deblur_jax' / 'configs' / 'mimo.py') in proc.stderr
