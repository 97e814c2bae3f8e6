"""A small MIMO-UNet that learns to deblur the embedded demo photos in minutes on a CPU.

  python -m deblur_jax.main --config=configs/demo.py --workdir=/tmp/deblur_demo

Trains on crops of scikit-image's colour photos blurred on the fly (seed
report 001's three Gaussians, and random linear motion for a fifth of the
crops), then evaluates on two held-out photos with visible blur (gauss7,
gauss11, motion) against the blurred input. About 8 minutes on 2 CPU cores.
"""

from configs import default as default_lib


def get_config():
  config = default_lib.get_config()
  # Base width 16 with one ResBlock per level (0.35M parameters): on a CPU the
  # most deblurring per minute among the sizes tried (see README).
  config.model.base_width = 16
  config.model.num_res = 1
  config.data.crop_size = 64
  config.data.demo.motion_fraction = 0.2
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.train.batch_size = 16
  config.train.num_train_steps = 1600
  config.train.log_every_steps = 100
  config.train.eval_every_steps = 800
  config.train.checkpoint_every_steps = 400
  config.train.num_image_summaries = 2
  return config
