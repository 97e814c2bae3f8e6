"""A small MIMO-UNet that learns to deblur the embedded demo photos in minutes on a CPU.

  python -m deblur_jax.main --config=configs/demo.py --workdir=/tmp/deblur_demo

`configs/mimo.py:demo` trained longer, on a textured set of photos: crops of
scikit-image's photos blurred on the fly (the three Gaussians of the 2023
Keras UNet report, and random linear motion for a fifth of the crops), then
evaluation on two held-out photos with visible blur (gauss7, gauss11, motion)
against the blurred input. 7.5 to 9 minutes on 2 CPU cores (README, per CPU).
"""

from configs import mimo


def get_config():
  config = mimo.get_config('demo')
  config.optimizer.warmup_steps = 100
  config.train.num_train_steps = 1600
  config.train.eval_every_steps = 800
  config.train.checkpoint_every_steps = 400
  # The retina photo's crops are nearly flat (a dark disc) and teach little; six grey
  # photos of edges and texture take its place (README, "Results on the embedded demo").
  config.data.demo.train_photos = ('astronaut,rocket,motorcycle_left,motorcycle_right,'
                                   'immunohistochemistry,hubble_deep_field,'
                                   'camera,grass,gravel,brick,coins,clock')
  return config
