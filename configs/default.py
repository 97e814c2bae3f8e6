"""Default configuration: MIMO-UNet with the paper's GoPro training recipe.

Every knob a user may turn lives here with its unit. Variants (mimo.py, demo.py,
tiny.py) import this file and override a few fields. Override any field from
the command line: `--config.optimizer.learning_rate=2e-4`.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameter init, data order, crops, flips and dropout.

  # The model: `name` picks it from the registry (deblur_jax.models.MODELS);
  # every other field is passed to the module as an attribute.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'mimo_unet'
  config.model.base_width = 32  # Channels at full resolution (2x, 4x at 1/2, 1/4).
  config.model.num_res = 8  # ResBlocks per encoder/decoder level (20 for MIMO-UNet+).
  config.model.dropout_rate = 0.0  # Channel dropout on the AFF outputs (0.1 for MIMO-UNet+).
  config.model.batch_norm = False  # BatchNorm after every conv (seed report 000).

  config.data = ml_collections.ConfigDict()
  # Root of a paired dataset: GOPRO_Large ({split}/SEQ/{blur,sharp}/*.png) or a
  # flattened copy ({split}/{blur,sharp}/*.png). Empty: the embedded demo photos.
  config.data.dir = ''
  config.data.train_split = 'train'  # Sub-folder of `dir` used for training.
  config.data.eval_split = 'test'  # Sub-folder of `dir` used for evaluation.
  config.data.blur_folder = 'blur'  # 'blur' (MIMO-UNet, NAFNet, ...) or 'blur_gamma'.
  config.data.sharp_folder = 'sharp'
  config.data.crop_size = 256  # Side of the square training crops, pixels.
  config.data.hflip = True  # Random horizontal flips of training pairs.
  config.data.max_eval_images = 0  # Evaluate on the first N test images; 0 = all.
  # The embedded demo source (used when `dir` is empty): scikit-image's colour
  # photos blurred on the fly with seed report 001's Gaussian kernels and random
  # motion kernels; two photos are held out for evaluation.
  config.data.demo = ml_collections.ConfigDict()
  # Blurs of the held-out photos to evaluate on, comma-separated, from
  # gauss3 (3x3 sigma 0.3, nearly invisible), gauss7 (7x7 sigma 1.0),
  # gauss11 (11x11 sigma 1.6) and motion (a fixed 9-pixel motion kernel).
  config.data.demo.eval_blurs = 'gauss7,gauss11,motion'
  config.data.demo.motion_fraction = 0.5  # Share of training crops with motion blur.

  # The training loss, applied to every output scale against the sharp image
  # downsampled the way the official code does (bilinear, no antialiasing).
  config.loss = ml_collections.ConfigDict()
  config.loss.name = 'mimo'  # 'mimo' (L1 + fft_weight * FFT L1), 'l1' or 'mse'.
  config.loss.fft_weight = 0.1  # Weight of the frequency L1 term of 'mimo'.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'adam'  # 'adam', 'adamw', 'rmsprop' or 'sgd'.
  config.optimizer.learning_rate = 1e-4  # Peak learning rate.
  config.optimizer.b1 = 0.9  # Adam first-moment decay.
  config.optimizer.b2 = 0.999  # Adam second-moment decay.
  config.optimizer.eps = 1e-8  # Adam / RMSprop denominator epsilon.
  config.optimizer.rho = 0.9  # RMSprop squared-gradient decay.
  config.optimizer.momentum = 0.9  # SGD momentum (0 = plain SGD).
  config.optimizer.nesterov = False  # SGD Nesterov momentum.
  # L2 penalty added to the gradients (PyTorch's `weight_decay`); for 'adamw'
  # it is the decoupled decay instead.
  config.optimizer.weight_decay = 0.0
  config.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm; 0 = off.
  # Learning-rate schedule: 'constant', 'multistep' (multiply by decay_factor
  # every decay_every_epochs or decay_every_steps) or 'cosine' (linear warm-up
  # then cosine decay to end_learning_rate over the whole run).
  config.optimizer.schedule = 'multistep'
  config.optimizer.decay_every_epochs = 500.0  # Paper: halve every 500 epochs.
  config.optimizer.decay_every_steps = 0  # Used instead of epochs when > 0.
  config.optimizer.decay_factor = 0.5
  config.optimizer.warmup_steps = 0  # Linear warm-up steps ('cosine' only).
  config.optimizer.end_learning_rate = 0.0  # Final learning rate ('cosine' only).

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 4  # Global batch over all devices and processes.
  config.train.num_epochs = 3000.0  # Passes over the training pairs (paper: 3000).
  config.train.num_train_steps = -1  # Used instead of num_epochs when > 0.
  # 'float32' or 'bfloat16' for activations; parameters stay float32.
  config.train.compute_dtype = 'float32'
  config.train.log_every_steps = 100
  config.train.eval_every_steps = 50_000  # Paper: every 100 epochs (52,600 steps).
  config.train.checkpoint_every_steps = 5_000
  config.train.keep_checkpoints = 3  # Latest checkpoints kept, besides the best by PSNR.
  config.train.num_image_summaries = 3  # Eval images written as blurred|restored|sharp.

  config.eval = ml_collections.ConfigDict()
  config.eval.checkpoint_step = -1  # `--mode=eval` loads this step; -1 = latest.
  config.eval.batch_size_per_device = 1  # Full-size test images per device.
  return config
