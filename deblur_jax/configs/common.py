"""What every shipped config shares: the sections besides `model`, each knob with its
unit, the one variant parser, and the short runs every config takes.

A config file's `get_config(arg)` reads the text after the colon of
`--config=configs/NAME.py:ARG` with `parse_arg`: comma-separated variant names, its own
(`configs/mimo.py:plus`) and the short runs `demo` (a few CPU minutes on the embedded
photos) and `tiny` (seconds, for tests), e.g. `configs/autoencoder.py:attention,demo`.
It builds on `base_config()`, sets its own `config.model` section, applies
`apply_short_run` and then shrinks its model for the short run. Any field can be
overridden on the command line: `--config.optimizer.learning_rate=2e-4`.
docs/configuration.md is generated from the comments here and in the model configs
(`python -m deblur_jax.configs.reference`).
"""

from typing import Optional, Sequence

import ml_collections


def optimizer_config(learning_rate: float, b1: float) -> ml_collections.ConfigDict:
  """The fields of an Optax chain (config.optimizer, config.gan.optimizer)."""
  optimizer = ml_collections.ConfigDict()
  optimizer.name = 'adam'  # 'adam', 'adamw', 'rmsprop' or 'sgd'.
  optimizer.learning_rate = learning_rate  # Peak learning rate.
  optimizer.b1 = b1  # Adam first-moment decay.
  optimizer.b2 = 0.999  # Adam second-moment decay.
  optimizer.eps = 1e-8  # Adam / RMSprop denominator epsilon.
  optimizer.rho = 0.9  # RMSprop squared-gradient decay.
  optimizer.momentum = 0.9  # SGD momentum (0 = plain SGD).
  optimizer.nesterov = False  # SGD Nesterov momentum.
  # L2 penalty added to the gradients (PyTorch's `weight_decay`); for 'adamw'
  # it is the decoupled decay instead.
  optimizer.weight_decay = 0.0
  optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm; 0 = off.
  # Learning-rate schedule: 'constant', 'multistep' (multiply by decay_factor
  # every decay_every_epochs or decay_every_steps) or 'cosine' (linear warm-up
  # then cosine decay to end_learning_rate over the whole run).
  optimizer.schedule = 'multistep'
  optimizer.decay_every_epochs = 500.0  # Paper: halve every 500 epochs.
  optimizer.decay_every_steps = 0  # Used instead of epochs when > 0.
  optimizer.decay_factor = 0.5  # 'multistep': the learning rate's multiplier per decay.
  optimizer.warmup_steps = 0  # Linear warm-up steps ('cosine' only).
  # Steps at the peak learning rate after the warm-up, before the cosine decay
  # begins ('cosine' only; Restormer's recipe holds 92k of its 300k steps).
  optimizer.hold_steps = 0
  optimizer.end_learning_rate = 0.0  # Final learning rate ('cosine' only).
  return optimizer


def basicsr_adamw(config: ml_collections.ConfigDict, *, learning_rate: float, b2: float,
                  weight_decay: float, end_learning_rate: float, hold_steps: int = 0) -> None:
  """Sets config.optimizer to the BasicSR recipes' (NAFNet, Restormer, FFTformer): AdamW
  with b1 0.9, gradients clipped to global norm 0.01, and a cosine to
  `end_learning_rate` without warm-up, after `hold_steps` at the peak."""
  config.optimizer.update(name='adamw', learning_rate=learning_rate, b1=0.9, b2=b2,
                          weight_decay=weight_decay, grad_clip_norm=0.01, schedule='cosine',
                          warmup_steps=0, hold_steps=hold_steps,
                          end_learning_rate=end_learning_rate)


def base_config():
  """Every section but `model`, each field at its default (MIMO-UNet's GoPro recipe)."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameter init, data order, crops, flips and dropout.

  # The model: `name` picks it from the registry (deblur_jax.models.MODELS); every
  # other field is passed to the module as an attribute. Each model's config file sets
  # this section (its fields are listed under that file).
  config.model = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  # Root of a paired dataset: GOPRO_Large ({split}/SEQ/{blur,sharp}/*.png) or a
  # flattened copy ({split}/{blur,sharp}/*.png); of sharp images for 'synthetic'.
  config.data.dir = ''
  # Where the pairs come from (deblur_jax/data/sources/): 'folders' reads `dir`;
  # 'tfds' reads the GoPro TFDS dataset (deblur_jax/data/gopro), prepared on first
  # use from tfds_manual_dir into tfds_data_dir; 'synthetic' blurs the sharp images
  # under dir/train_split as they are drawn (config.data.synthetic) and evaluates on
  # dir/eval_split blurred once; 'demo' trains on the embedded photos (config.data.demo).
  # 'auto': 'demo' when `dir` is empty, 'folders' otherwise. Only 'folders' and
  # 'synthetic' read `dir`: it must be set for them and empty for the others.
  config.data.source = 'auto'
  config.data.tfds_data_dir = ''  # '' = TFDS's default (~/tensorflow_datasets).
  config.data.tfds_manual_dir = ''  # Holds GOPRO_Large/ or GOPRO_Large.zip.
  config.data.train_split = 'train'  # Sub-folder of `dir` used for training.
  config.data.eval_split = 'test'  # Sub-folder of `dir` used for evaluation.
  config.data.blur_folder = 'blur'  # 'blur' (MIMO-UNet, NAFNet, ...) or 'blur_gamma'.
  config.data.sharp_folder = 'sharp'  # The sharp images' folder beside blur_folder.
  # Text files listing the training / evaluation pairs instead of the split folders
  # (RealBlur, HIDE, any layout): one pair per line, two paths relative to `dir` (or
  # absolute), in pairs_file_order; '#' starts a comment. '' = scan the split folder.
  config.data.train_pairs_file = ''
  config.data.eval_pairs_file = ''
  config.data.pairs_file_order = 'blur_sharp'  # or 'sharp_blur' (RealBlur's lists: gt first)
  config.data.crop_size = 256  # Side of the square training crops, pixels.
  # Progressive training (Restormer's): ((steps, crop_size, global_batch), ...), stage after
  # stage, the last to train.num_train_steps (needed: stages count steps). crop_size and
  # train.batch_size are then not used; the model is initialised at the first stage's crops.
  # () = crop_size and train.batch_size throughout.
  config.data.stages = ()
  # Random turns of the training crops: 'hflip' (horizontal flips, MIMO-UNet's),
  # 'flips_rot90' (horizontal and vertical flips and 90-degree rotations, as BasicSR
  # and NAFNet train) or 'none'.
  config.data.augment = 'hflip'
  # Decoded training images ('folders' source; the others decode as they go). 'auto' is
  # 'file': every training pair decoded once into cache_dir and memory-mapped, reused
  # while the images are unchanged, one copy per node shared by its processes (GoPro
  # train: 11.6 GB of uint8). 'memory': decoded at start-up into this process's RAM
  # (11.6 GB per process). 'none': both files of a pair decoded for every crop (~20 ms
  # per 1280x720 PNG per core: tens of crops per CPU-second instead of thousands).
  config.data.cache = 'auto'
  # Folder of cache='file', needing room for the decoded set; '' = $XDG_CACHE_HOME/deblur_jax
  # (~/.cache/deblur_jax). On a cluster, a node-local disk such as $SLURM_TMPDIR.
  config.data.cache_dir = ''
  # Threads of the training input pipeline (tf.data's pool and parallel calls);
  # 0 = one per CPU this process may run on (its affinity: a SLURM task's CPUs).
  # On a small CPU the pipeline's threads and XLA's share the cores.
  config.data.threads = 0
  config.data.max_eval_images = 0  # Evaluate on the first N test images; 0 = all.
  # The embedded demo source (source 'demo', or 'auto' with `dir` empty):
  # scikit-image's colour photos blurred on the fly with the three Gaussian kernels
  # of the 2023 Keras UNet report and random motion kernels; two photos are held
  # out for evaluation.
  config.data.demo = ml_collections.ConfigDict()
  # Blurs of the held-out photos to evaluate on, comma-separated, from
  # gauss3 (3x3 sigma 0.3, nearly invisible), gauss7 (7x7 sigma 1.0),
  # gauss11 (11x11 sigma 1.6) and motion (a fixed 9-pixel motion kernel).
  config.data.demo.eval_blurs = 'gauss7,gauss11,motion'
  config.data.demo.motion_fraction = 0.5  # Share of training crops with motion blur.
  config.data.demo.motion_kernels = 32  # Random linear motion kernels (5-15 px) to draw from.
  # The photos cropped for training, comma-separated (demo.BUNDLED_PHOTOS lists the choice).
  config.data.demo.train_photos = ('astronaut,rocket,motorcycle_left,motorcycle_right,'
                                   'immunohistochemistry,hubble_deep_field,retina')
  # source='synthetic': how the sharp images are degraded (deblur_jax.data.degrade.degradations).
  config.data.synthetic = ml_collections.ConfigDict()
  # Kernel families, one drawn per crop: gauss3, gauss7, gauss11 (the Keras UNet report's),
  # motion (random line), shake (Boracchi-Foi camera shake), defocus (disk) and
  # identity (no blur: noise and JPEG only, for denoising).
  config.data.synthetic.kernels = 'gauss7,shake'
  config.data.synthetic.kernel_size = 0  # Odd side; 0 = Gaussians' own, 31 for the others.
  config.data.synthetic.noise_sigma = '0'  # Gaussian noise std ([0, 1] units) or 'LOW,HIGH'.
  config.data.synthetic.jpeg_quality = '0'  # JPEG round trip quality 1-100 or 'LOW,HIGH'; 0 = off.
  config.data.synthetic.eval_seed = 0  # Seeds the fixed evaluation set's blur.

  # The training loss, applied to every output scale against the sharp image
  # downsampled the way the official code does (bilinear, no antialiasing).
  config.loss = ml_collections.ConfigDict()
  # The main loss (weight 1): 'mimo' (L1 + fft_weight * FFT L1), 'l1', 'mse',
  # 'charbonnier', 'psnr' (NAFNet's), 'ssim' (1 - SSIM), 'sobel' (edge L1),
  # 'fft' (MIMO's FFT L1), 'fft_amplitude' or 'perceptual' (VGG features).
  config.loss.name = 'mimo'
  config.loss.fft_weight = 0.1  # Weight of the frequency L1 term of 'mimo'.
  # Other losses added with these weights (0 = not used); the same names.
  config.loss.extra_weights = ml_collections.ConfigDict({
      name: 0.0 for name in ('l1', 'mse', 'charbonnier', 'psnr', 'ssim', 'sobel', 'fft',
                             'fft_amplitude', 'perceptual')})
  config.loss.charbonnier_eps = 1e-3  # Charbonnier's epsilon: sqrt(d^2 + eps^2).
  # Perceptual loss: distance between VGG features of output and target, with
  # ImageNet weights converted once by `python -m deblur_jax.convert_vgg`.
  config.loss.perceptual_network = 'vgg19'  # 'vgg16' or 'vgg19'.
  config.loss.perceptual_layer = 'conv3_3'  # convB_K, reluB_K or poolB.
  config.loss.perceptual_weights = ''  # Path of the converted .npz file.
  config.loss.perceptual_distance = 'mse'  # 'mse' or 'l1'.

  config.optimizer = optimizer_config(learning_rate=1e-4, b1=0.9)

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 4  # Global batch over all devices and processes.
  config.train.num_epochs = 3000.0  # Passes over the training pairs (paper: 3000).
  config.train.num_train_steps = -1  # Used instead of num_epochs when > 0.
  # 'float32' or 'bfloat16' for activations; parameters stay float32.
  config.train.compute_dtype = 'float32'
  # Shard parameters and optimizer state across the devices (FSDP-style) instead
  # of replicating them; for large variants whose state does not fit one device.
  config.train.fsdp = False
  # With fsdp: arrays of fewer elements stay replicated (their all-gathers cost more).
  config.train.fsdp_min_size = 65536
  config.train.log_every_steps = 100  # Training metrics: means over this many steps.
  config.train.eval_every_steps = 50_000  # Paper: every 100 epochs (52,600 steps).
  config.train.checkpoint_every_steps = 5_000  # Also after every evaluation.
  config.train.keep_checkpoints = 3  # Latest checkpoints kept, besides the best by PSNR.
  config.train.num_image_summaries = 3  # Eval images written as blurred|restored|sharp.
  # The validation metric that picks the best checkpoint and drives the plateau
  # and early-stopping callbacks: 'psnr', 'ssim' (higher is better) or 'mse'.
  config.train.monitor = 'psnr'
  # ReduceLROnPlateau (optax.contrib.reduce_on_plateau): multiply the learning
  # rate by plateau_factor after plateau_patience evaluations without an
  # improvement larger than plateau_min_delta (monitored metric's units). 0 = off.
  config.train.plateau_factor = 0.0
  config.train.plateau_patience = 5  # Evaluations.
  config.train.plateau_min_delta = 1e-4  # Absolute, like Keras' min_delta.
  config.train.plateau_cooldown = 0  # Evaluations to wait after a reduction.
  config.train.plateau_min_scale = 0.0  # Lowest multiple of the learning rate.
  # Early stopping after early_stop_patience evaluations without an improvement
  # larger than early_stop_min_delta (in the monitored metric's units). 0 = off.
  config.train.early_stop_patience = 0
  config.train.early_stop_min_delta = 0.0
  config.train.early_stop_restore_best = True  # The final checkpoint gets the best weights.
  # Exponential moving average of the parameters, evaluated and saved beside
  # the trained ones (checkpoint item 'ema'). 0 = off; 0.999 is typical.
  config.train.ema_decay = 0.0
  # A step whose loss or gradients are NaN or Inf is skipped; this many in a row
  # stop training with an error, keeping the last good checkpoint.
  config.train.max_nonfinite_steps = 10
  # JAX's transfer guard for device-to-host copies between log steps, where the loop
  # copies nothing so the devices never wait for the host: 'allow'; 'log' or
  # 'disallow' (and '_explicit' forms) to find a copy that code added there makes.
  config.train.transfer_guard = 'allow'
  # Fine-tuning: start from the model parameters (and BatchNorm statistics) of another
  # run: a work directory (its latest checkpoint, or init_from_step) or a checkpoint
  # step folder, own or converted (deblur_jax.convert). Training starts at step 0 with
  # a fresh optimizer, schedule and data position; the work directory's own
  # checkpoints, once there are any, take precedence (a preempted fine-tune resumes).
  config.train.init_from = ''
  config.train.init_from_step = -1  # With a work directory: this step; -1 = the latest.
  # False: load the parameters whose names and shapes match, list the others (a new head).
  config.train.init_from_strict = True

  # Adversarial training (DeblurGAN-style, see configs/gan.py): off while
  # discriminator.name is empty. Only GAN generators
  # (config.model.name='gan_generator') take a discriminator.
  config.gan = ml_collections.ConfigDict()
  config.gan.discriminator = ml_collections.ConfigDict()
  config.gan.discriminator.name = ''  # Registry: deblur_jax.models.DISCRIMINATORS.
  config.gan.loss = 'lsgan'  # 'vanilla' (BCE), 'lsgan', 'wgan_gp' or 'ragan_ls'.
  config.gan.weight = 0.001  # Weight of the adversarial term in the generator loss.
  config.gan.critic_steps = 1  # Discriminator updates per generator update.
  config.gan.gradient_penalty_weight = 10.0  # WGAN-GP's lambda ('wgan_gp' only).
  # The discriminator's starting weights, like config.train.init_from for the generator
  # (a GAN run's work directory or step folder); '' = freshly initialised.
  config.gan.init_from = ''
  # The discriminator's optimizer (same fields as config.optimizer).
  config.gan.optimizer = optimizer_config(learning_rate=1e-4, b1=0.5)

  config.eval = ml_collections.ConfigDict()
  config.eval.checkpoint_step = -1  # `--mode=eval` loads this step; -1 = latest.
  config.eval.batch_size_per_device = 1  # Full-size test images per device.
  config.eval.ema = False  # `--mode=eval` evaluates the moving average (checkpoint item 'ema').
  # How PSNR and SSIM are computed (deblur_jax.evaluation.protocols): 'mimo' (float
  # outputs clipped to [0, 1], scikit-image's Gaussian SSIM per channel, as the
  # MIMO-UNet code), 'basicsr' (outputs rounded to uint8, BasicSR's calculate_psnr
  # and per-channel calculate_ssim on the valid region) or 'nafnet' (uint8, PSNR on
  # RGB and BasicSR's 3-D SSIM over H x W x 3, as NAFNet reports); 'realblur' or
  # 'rsblur' (each output aligned to its sharp image by OpenCV's ECC on the host,
  # then PSNR and SSIM over the covered pixels, as RealBlur's and RSBlur's scripts)
  # or 'dpdd' (PSNR, scikit-image's default SSIM and MAE, as Restormer's DPDD scripts).
  config.eval.protocol = 'mimo'
  # Images whose blurred | restored | sharp comparison each results page
  # (eval/step_N.html) stores beside it; the table lists every image.
  config.eval.page_images = 100
  config.eval.crop_border = 0  # Pixels cut from each side before scoring ('basicsr').
  config.eval.y_channel = False  # Score the Y of YCbCr (BT.601) instead of RGB ('basicsr').
  return config


SHORT_RUNS = ('demo', 'tiny')


def parse_arg(arg: Optional[str], config_file: str, own: Sequence[str] = ()) -> tuple[str, ...]:
  """The variants named by `arg`, the text after the colon of --config=FILE:ARG.

  Comma-separated ('attention,demo'); None or '' names none. Each must be one of the
  file's `own` variants or SHORT_RUNS, at most one short run and none twice;
  otherwise a ValueError naming `config_file` and the choices.
  """
  names = tuple(n.strip() for n in (arg or '').split(',') if n.strip())
  allowed = (*own, *SHORT_RUNS)
  unknown = [n for n in names if n not in allowed]
  if unknown or len(set(names) & set(SHORT_RUNS)) > 1 or len(set(names)) < len(names):
    raise ValueError(f'Unknown variant {arg!r} for {config_file}; choose from {list(allowed)}, '
                     f"comma-separated, at most one of {list(SHORT_RUNS)} (e.g. "
                     f"'{config_file}:{(own or SHORT_RUNS)[0]}').")
  return names


def apply_short_run(config: ml_collections.ConfigDict, variants: Sequence[str],
                    demo_steps: int = 600) -> ml_collections.ConfigDict:
  """The short run shared by every config, when `variants` names one.

  'demo': a few CPU minutes on the embedded demo photos (64x64 crops, batch 16,
  cosine schedule over `demo_steps`, evaluation at the end); 'tiny': 3 steps of
  batch 4 at 32x32 for tests, checkpoints at steps 2 and 3. Otherwise the
  config's recipe is left as it is. Model sizes are the caller's to shrink.
  """
  if not set(variants) & set(SHORT_RUNS):
    return config
  config.data.dir = ''
  config.data.source = 'auto'
  config.train.early_stop_patience = 0  # one evaluation: nothing to compare
  config.train.plateau_factor = 0.0
  if 'demo' in variants:
    config.data.crop_size = 64
    config.data.demo.motion_fraction = 0.2
    config.optimizer.schedule = 'cosine'
    config.optimizer.warmup_steps = 50
    config.train.batch_size = 16
    config.train.num_train_steps = demo_steps
    config.train.log_every_steps = 100
    config.train.eval_every_steps = demo_steps
    config.train.checkpoint_every_steps = demo_steps
    config.train.num_image_summaries = 2
  else:
    config.data.crop_size = 32
    config.data.max_eval_images = 2
    config.data.demo.eval_blurs = 'gauss7'
    config.optimizer.schedule = 'constant'
    config.train.batch_size = 4
    config.train.num_train_steps = 3
    config.train.log_every_steps = 1
    config.train.eval_every_steps = 3
    config.train.checkpoint_every_steps = 2
    config.train.keep_checkpoints = 2
    config.train.num_image_summaries = 1
  return config
