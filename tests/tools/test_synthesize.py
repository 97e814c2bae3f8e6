"""The synthesize command, under both of its names."""

import json
import os

import numpy as np

from helpers import run_tool, smooth_image, write_png


def test_command_line_writes_the_tree_and_reports_bad_input_in_one_line(tmp_path):
  rng = np.random.default_rng(0)
  sharp_dir = tmp_path / 'photos'
  write_png(sharp_dir / 'a.png', smooth_image(rng, 24, 32))
  write_png(sharp_dir / 'sub' / 'b.png', smooth_image(rng, 20, 28))
  out = tmp_path / 'out'
  done = run_tool('deblur_jax.synthesize', f'--input={sharp_dir}', f'--output={out}',
                  '--kernels=defocus,motion', '--kernel_size=7', '--noise_sigma=0,0.01',
                  '--jpeg_quality=80,95', '--seed=4')
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == f'Wrote 2 pairs to {out}.'
  assert sorted(os.listdir(out)) == ['blur', 'kernels', 'manifest.json', 'sharp']
  manifest = json.loads((out / 'manifest.json').read_text())
  assert manifest['seed'] == 4 and manifest['spec']['kernel_size'] == 7
  assert [e['name'] for e in manifest['images']] == ['a.png', 'sub_b.png']

  (tmp_path / 'file').write_text('x')
  done = run_tool('deblur_jax.synthesize', f'--input={sharp_dir}',
                  f'--output={tmp_path / "file"}')
  assert done.returncode == 2
  assert done.stderr.strip().splitlines()[-1] == (
      f"Error: --output='{tmp_path / 'file'}' is a file; give a folder.")
  done = run_tool('deblur_jax.synthesize', f'--input={sharp_dir}', f'--output={out}',
                  '--noise_sigma=a,b,c')
  assert done.returncode == 2 and 'Error: --noise_sigma=a,b,c' in done.stderr

  (sharp_dir / 'broken.png').write_bytes(b'not an image')
  done = run_tool('deblur_jax.synthesize', f'--input={sharp_dir}', f'--output={out}')
  assert done.returncode == 1
  assert done.stdout.strip() == (
      f"Wrote 2 pairs to {out}; skipped 1: {sharp_dir / 'broken.png'}.")
