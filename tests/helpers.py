"""Test data: smooth random images and small GoPro-like PNG trees."""

import importlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
# Files written once by real PyTorch (fixtures/pytorch_reference.py).
FIXTURES = REPO / 'tests' / 'fixtures'


def smooth_image(rng, height, width):
  """A random smooth RGB uint8 image (sums of a few sinusoids)."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  channels = []
  for _ in range(3):
    value = np.zeros_like(y)
    for _ in range(3):
      fy, fx, phase = rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi)
      value += np.sin(2 * np.pi * (fy * y + fx * x) + phase)
    channels.append(value)
  image = np.stack(channels, -1)
  image = (image - image.min()) / (image.max() - image.min() + 1e-9)
  return np.round(image * 255).astype(np.uint8)


def box_blur(image, k=5):
  padded = np.pad(image.astype(np.float32), ((k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode='edge')
  out = np.zeros(image.shape, np.float32)
  for dy in range(k):
    for dx in range(k):
      out += padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
  return np.round(out / (k * k)).astype(np.uint8)


def write_png(path, array):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


def train_batches(data_config, n, *, start_step=0, global_batch=4, rows=range(4), seed=0):
  """(the first `n` local batches of the training pipeline, number of training images)."""
  from deblur_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  dataset, num_images = pipeline.create_train_dataset(
      data_config, seed=seed, global_batch=global_batch, rows=rows, start_step=start_step)
  it = dataset.as_numpy_iterator()
  return [next(it) for _ in range(n)], num_images


def contains_window(image, window):
  """Whether `window` (or its mirror image) is a sub-array of `image`."""
  size = window.shape[0]
  for candidate in (window, window[:, ::-1]):
    for y in range(image.shape[0] - size + 1):
      for x in range(image.shape[1] - size + 1):
        if np.allclose(image[y:y + size, x:x + size], candidate, atol=1e-6):
          return True
  return False


def make_pair_tree(root, layout='native', splits=('train', 'test'), num_sequences=2,
                   per_sequence=3, size=(48, 64), seed=0, blur_folder='blur'):
  """Writes a small GoPro-like dataset and returns its root.

  layout 'native': SPLIT/SEQ/{blur,sharp}/NNNNNN.png; 'flat': SPLIT/{blur,sharp}/NAME.png.
  """
  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  for split in splits:
    for s in range(num_sequences):
      for i in range(per_sequence):
        sharp = smooth_image(rng, *size)
        blurred = box_blur(sharp)
        if layout == 'native':
          folder, name = root / split / f'GOPR{s:04d}_00_00', f'{i:06d}.png'
        else:
          folder, name = root / split, f'seq{s}_{i:06d}.png'
        write_png(folder / blur_folder / name, blurred)
        write_png(folder / 'sharp' / name, sharp)
  return root


def write_tiny_checkpoint(workdir, step=1, **model_overrides):
  """Saves an untrained tiny MIMO-UNet (configs/mimo.py:tiny) as workdir's checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top

  from deblur_jax import models
  from deblur_jax.configs import mimo  # pylint: disable=g-import-not-at-top
  from deblur_jax.core import checkpoints
  from deblur_jax.parallel import sharding
  from deblur_jax.training import optimizers
  from deblur_jax.training import state as state_lib
  config = mimo.get_config('tiny')
  config.model.update(model_overrides)
  model = models.build_model(config.model)
  tx, _ = optimizers.build_optimizer(config.optimizer, 10, 1)
  state = state_lib.create_train_state(jax.random.key(0), model, tx, 32,
                                       sharding.create_mesh(jax.devices()[:1]))
  manager = checkpoints.create_manager(str(workdir), keep=1)
  checkpoints.save(manager, step, state, config.to_dict())
  manager.close()
  return model, state.variables()


def saved_item(workdir, step, item='model'):
  """The item ('model', 'train', 'ema', ...) of workdir's checkpoint at `step`, as saved."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from deblur_jax.core import checkpoints  # pylint: disable=g-import-not-at-top
  manager = checkpoints.create_manager(str(workdir), keep=1, read_only=True)
  restored = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore()}))
  manager.close()
  return restored[item]


# The tests run tiny programs whose time is nearly all XLA compilation: LLVM's
# optimisations cost 3-4x more compile time than they save in run time here.
# Every comparison in the suite is between runs under the same flags, or against
# PyTorch within a stated tolerance, so the numbers under test do not depend on it.
FAST_COMPILE_XLA_FLAGS = ('--xla_backend_optimization_level=0 '
                          '--xla_llvm_disable_expensive_passes=true')


def xla_flags(num_devices: int, extra: str = '') -> str:
  """XLA_FLAGS for a test process with `num_devices` CPU devices."""
  from deblur_jax.cli import runtime  # pylint: disable=g-import-not-at-top
  return runtime.xla_flags_for(
      f'{FAST_COMPILE_XLA_FLAGS} --xla_force_host_platform_device_count={num_devices} '
      f'{extra}'.strip(), 'train')


def run_tool(module, *args, num_devices=1, cwd=REPO, pythonpath=REPO):
  """Runs `python -m module args` in `cwd` (the repository) with `num_devices` CPU
  devices, importing from `pythonpath` first. Tools define absl flags when imported,
  so each runs in its own process."""
  env = dict(os.environ, PYTHONPATH=str(pythonpath), XLA_FLAGS=xla_flags(num_devices))
  return subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def train_scalars(workdir):
  """{tag: {step: value}} of the scalars in workdir's TensorBoard event files."""
  from deblur_jax.evaluation import results_page  # pylint: disable=g-import-not-at-top
  return results_page.read_scalars(str(workdir))


def start(cmd, env, log_path):
  """Starts `cmd` in its own process group, output to `log_path`."""
  with open(log_path, 'w') as log:
    return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO), **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(procs, timeout_s=600):
  """Waits for every process; on a timeout (or any error) kills all their groups."""
  deadline = time.monotonic() + timeout_s
  try:
    return [p.wait(timeout=max(deadline - time.monotonic(), 0)) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


# Each registered model as its tiny config (config module, variant, model overrides).
# NAFNet with TLC windows of 12, 6 and 3 pixels at its three levels: local at
# 20x28, the whole map at 9x11 (padded to 12x12), so the exported program's
# run-time choice between them is checked both ways.
TINY_MODELS = (
    ('mimo', 'tiny', {}),
    ('nafnet', 'tiny', {'tlc_train_size': 8}),
    ('unet', 'tiny', {}),
    ('resunet', 'tiny', {}),
    ('autoencoder', 'tiny', {}),
    ('autoencoder', 'attention,tiny', {}),
    ('gan', 'tiny', {}),
    ('restormer', 'tiny', {}),
    ('fftformer', 'tiny', {}),
    ('evssm', 'tiny', {'window_sizes': (12, 6, 3)}),  # windows overlapping at 20x28
)


def tiny_model_config(config_name, variant, overrides):
  config = importlib.import_module(f'deblur_jax.configs.{config_name}').get_config(variant)
  config.model.update(overrides)
  return config.model


def random_variables(model):
  """`model`'s variables drawn with NumPy: no init program to compile (seconds per
  model), and none left at its initial value (NAFNet's beta and gamma start at
  zero, which makes its blocks, TLC and all, identities)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from deblur_jax import models  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == 'kernel':
      value = rng.uniform(-1.5, 1.5, size=shape) / np.sqrt(np.prod(shape[:-1]))
    elif name in ('scale', 'var'):  # norm scales and running variances: positive
      value = rng.uniform(0.8, 1.2, size=shape)
    else:
      value = 0.2 * rng.normal(size=shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, models.variables_template(model))
