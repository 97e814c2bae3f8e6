"""A tiny MIMO-UNet that trains for a few steps in seconds: for tests and smoke runs."""

from configs import default as default_lib


def get_config():
  config = default_lib.get_config()
  config.model.base_width = 8
  config.model.num_res = 1
  config.data.crop_size = 32
  config.data.max_eval_images = 2
  config.data.demo.eval_blurs = 'gauss7'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'constant'
  config.train.batch_size = 4
  config.train.num_train_steps = 3
  config.train.log_every_steps = 1
  config.train.eval_every_steps = 3
  config.train.checkpoint_every_steps = 2
  config.train.keep_checkpoints = 2
  config.train.num_image_summaries = 1
  return config
