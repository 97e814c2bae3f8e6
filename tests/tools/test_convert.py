"""The convert command: official weights in, a checkpoint and the command to evaluate it out.
The conversions themselves are tested in-process in tests/weights."""

from helpers import FIXTURES, run_tool


def test_convert_reads_the_model_from_the_weights_and_prints_how_to_evaluate(tmp_path):
  proc = run_tool('deblur_jax.convert', f'--input={FIXTURES / "nafnet" / "tiny_nafnet.pth"}',
                  f'--output={tmp_path}')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert (tmp_path / 'checkpoints' / '0').is_dir()
  assert (f"python -m deblur_jax.main --config=configs/nafnet.py --config.model.width=8 "
          f"'--config.model.enc_blk_nums=(1,1,)' '--config.model.dec_blk_nums=(1,1,)' "
          f'--workdir={tmp_path} --mode=eval') in proc.stdout


def test_a_file_as_output_is_refused_and_kept(tmp_path):
  output = tmp_path / 'out.txt'
  output.write_text('keep me')
  proc = run_tool('deblur_jax.convert', f'--input={FIXTURES / "mimo_unet_tiny_zip.pkl"}',
                  '--model=mimo_unet', f'--output={output}')
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert f'Error: --output={output} is a file' in proc.stderr
  assert output.read_text() == 'keep me'
