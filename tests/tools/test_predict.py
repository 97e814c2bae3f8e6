"""`python -m deblur_jax.predict` end to end on a tiny checkpoint."""


import numpy as np
import pytest
from PIL import Image

from helpers import run_tool, smooth_image, write_tiny_checkpoint


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = tmp_path_factory.mktemp('run')
  write_tiny_checkpoint(path, step=5)
  return path


def predict(*args):
  return run_tool('deblur_jax.predict', *args)


def test_a_folder_of_mixed_images_is_restored_and_a_bad_file_skipped(workdir, tmp_path):
  rng = np.random.default_rng(0)
  inputs = tmp_path / 'in'
  (inputs / 'sub').mkdir(parents=True)
  Image.fromarray(smooth_image(rng, 37, 53)).save(inputs / 'odd.png')
  Image.fromarray(smooth_image(rng, 40, 30)[..., 0]).save(inputs / 'sub' / 'gray.png')
  Image.fromarray(smooth_image(rng, 20, 24)).save(inputs / 'photo.jpg', quality=90)
  (inputs / 'broken.png').write_bytes(b'\x89PNG garbage')
  out = tmp_path / 'out'
  proc = predict(f'--workdir={workdir}', f'--input={inputs}', f'--output={out}', '--compare')
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert 'broken.png' in proc.stderr and 'Wrote 3 deblurred images' in proc.stderr
  assert Image.open(out / 'odd.png').size == (53, 37)
  assert Image.open(out / 'odd_compare.png').size == (106, 37)
  assert Image.open(out / 'sub' / 'gray.png').mode == 'L'
  assert Image.open(out / 'photo.png').size == (24, 20)
  assert not (out / 'broken.png').exists()


def test_checkpoint_path_tiles_and_ensemble(workdir, tmp_path):
  Image.fromarray(smooth_image(np.random.default_rng(1), 70, 150)).save(tmp_path / 'wide.png')
  proc = predict(f'--checkpoint={workdir}/checkpoints/5', f'--input={tmp_path / "wide.png"}',
                 f'--output={tmp_path / "out"}', '--tile=64', '--tile_overlap=16', '--ensemble')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert Image.open(tmp_path / 'out' / 'wide.png').size == (150, 70)


@pytest.mark.parametrize('args,message', [
    (['--output={file}'], 'is a file; give a folder'),
    (['--checkpoint={run}/checkpoints'], 'is not a checkpoint step directory'),
    (['--workdir={tmp}'], 'has no checkpoints/ folder'),
    (['--tile=100'], '--tile=100 must be a multiple of 64'),
])
def test_bad_arguments_are_one_line_errors(workdir, tmp_path, args, message):
  Image.fromarray(smooth_image(np.random.default_rng(2), 16, 16)).save(tmp_path / 'x.png')
  (tmp_path / 'file.txt').write_text('')
  values = {'file': tmp_path / 'file.txt', 'run': workdir, 'tmp': tmp_path}
  args = [a.format(**values) for a in args]
  defaults = [f'--input={tmp_path / "x.png"}', f'--output={tmp_path / "out"}']
  if not any(a.startswith(('--workdir', '--checkpoint')) for a in args):
    defaults.append(f'--workdir={workdir}')
  if any(a.startswith('--output') for a in args):
    defaults = [d for d in defaults if not d.startswith('--output')]
  proc = predict(*defaults, *args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert message in proc.stderr and 'Traceback' not in proc.stderr
