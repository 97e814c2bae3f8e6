"""A small MIMO-UNet that learns to deblur the embedded demo photos in minutes on a CPU.

  python -m deblur_jax.main --config=configs/demo.py --workdir=/tmp/deblur_demo

Trains on crops of scikit-image's colour photos blurred on the fly (seed
report 001's Gaussians and random motion), then evaluates on two held-out
photos with visible blur (gauss7, gauss11, motion) against the blurred input.
"""

from configs import default as default_lib


def get_config():
  config = default_lib.get_config()
  config.model.base_width = 16
  config.model.num_res = 2
  config.data.crop_size = 64
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.train.batch_size = 16
  config.train.num_train_steps = 1200
  config.train.log_every_steps = 100
  config.train.eval_every_steps = 600
  config.train.checkpoint_every_steps = 600
  config.train.num_image_summaries = 2
  return config
