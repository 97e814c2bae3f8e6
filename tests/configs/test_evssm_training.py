"""EVSSM's tiny config trains (whole crops scanned, sharded over the test's 4 CPU
devices) and evaluates (in its windows), as the other configs do in
test_model_configs.py; a file of its own so that its compile runs beside theirs."""

import numpy as np

from deblur_jax.configs import evssm
from deblur_jax.training import loop


def test_the_evssm_config_trains_two_steps_and_evaluates(tmp_path):
  config = evssm.get_config('tiny')
  config.train.num_train_steps = 2
  config.data.max_eval_images = 1  # one image size: one evaluation program to compile
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(summary['psnr']) and summary['num_images'] == 1
