"""A small MIMO-UNet that learns to deblur the embedded demo photos in minutes on a CPU.

  python -m deblur_jax.main --config=configs/demo.py --workdir=/tmp/deblur_demo

`configs/mimo.py:demo` trained longer: crops of scikit-image's colour photos
blurred on the fly (the three Gaussians of the 2023 Keras UNet report, and
random linear motion for a fifth of the crops), then evaluation on two
held-out photos with visible blur (gauss7, gauss11, motion) against the
blurred input. 7.5 to 9 minutes on 2 CPU cores (README, per CPU).
"""

from configs import mimo


def get_config():
  config = mimo.get_config('demo')
  config.optimizer.warmup_steps = 100
  config.train.num_train_steps = 1600
  config.train.eval_every_steps = 800
  config.train.checkpoint_every_steps = 400
  return config
