"""Converts official PyTorch MIMO-UNet, MIMO-UNet+ and NAFNet weights into an Orbax checkpoint.

  python -m deblur_jax.convert --input=MIMO-UNet.pkl --model=mimo_unet --output=DIR
  python -m deblur_jax.convert --input=MIMO-UNetPlus.pkl --model=mimo_unet_plus --output=DIR
  python -m deblur_jax.convert --input=NAFNet-GoPro-width64.pth --output=DIR  # model from keys
  python -m deblur_jax.main --config=configs/mimo.py --workdir=DIR --mode=eval

Reads the file without PyTorch (deblur_jax.weights.pytorch_reader), in the legacy or
the zip serialization; deblur_jax.weights.official tells the model from its keys
(or checks it against --model) and converts it. DIR/checkpoints gets a checkpoint
at step 0 with the items 'model' ({'params': ...}) and 'config' (the converted
model's fields), which evaluation, deblur_jax.predict and deblur_jax.export
restore; it has no optimizer state to resume training from.
"""

from absl import flags

from deblur_jax.cli import command_line
from deblur_jax.core import checkpoints
from deblur_jax.weights import official

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Only when run as a program: predict.py defines --input and --output too,
  and a test process may import both modules."""
  flags.DEFINE_string('input', None, 'The PyTorch checkpoint (.pkl/.pth/.pt) to convert.')
  flags.DEFINE_enum('model', None, list(official.MODELS),
                    'Which official model the weights are for; default: read from the weights.')
  flags.DEFINE_string('output', None, 'The work directory to write; the checkpoint goes into '
                      'OUTPUT/checkpoints, which must not exist yet or be empty.')
  flags.mark_flags_as_required(['input', 'output'])


def main(_):
  model_name, model_config = official.convert_file(FLAGS.input, FLAGS.model, FLAGS.output)
  config_file = official.MODELS[model_name][1] + official.overrides(model_name, model_config)
  print(f'Wrote {checkpoints.checkpoint_dir(FLAGS.output)} ({model_name}). Evaluate it with:\n'
        f'  python -m deblur_jax.main --config={config_file} '
        f'--workdir={FLAGS.output} --mode=eval')


def run() -> None:
  """The console script's entry point."""
  _define_flags()
  command_line.run(main)


if __name__ == '__main__':
  run()
