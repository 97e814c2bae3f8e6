"""Every shipped config and variant the docs name: locked data with the documented values,
one variant syntax for all, typos rejected; README command 1's config trains."""

import importlib

import pytest
from absl import flags
from ml_collections import config_flags

from deblur_jax.configs import common, mimo
from deblur_jax.training import loop
from helpers import REPO

SECTIONS = {'seed', 'model', 'data', 'loss', 'optimizer', 'train', 'eval', 'gan'}

# (config file[:variant], documented values: {'section.field': value}).
DOCUMENTED = [
    ('mimo.py', {'model.name': 'mimo_unet', 'model.num_res': 8, 'model.dropout_rate': 0.0,
                 'optimizer.schedule': 'multistep', 'loss.name': 'mimo', 'train.batch_size': 4,
                 'data.crop_size': 256, 'optimizer.learning_rate': 1e-4,
                 'train.num_epochs': 3000.0, 'data.source': 'auto', 'data.dir': ''}),
    ('mimo.py:plus', {'model.num_res': 20, 'model.dropout_rate': 0.1, 'train.batch_size': 4}),
    ('mimo.py:demo', {'model.base_width': 16, 'model.num_res': 1, 'train.num_train_steps': 1600,
                 'optimizer.learning_rate': 2e-3, 'optimizer.schedule': 'cosine',
                 'optimizer.warmup_steps': 100, 'data.crop_size': 64, 'train.batch_size': 16,
                 'data.demo.motion_fraction': 0.2, 'train.eval_every_steps': 800,
                 'train.checkpoint_every_steps': 400, 'data.source': 'auto'}),
    ('mimo.py:tiny', {'model.base_width': 8, 'model.num_res': 1, 'train.num_train_steps': 3,
                 'train.batch_size': 4, 'data.crop_size': 32, 'train.checkpoint_every_steps': 2,
                 'optimizer.learning_rate': 1e-3, 'data.max_eval_images': 2}),
    ('unet.py', {'model.name': 'unet', 'loss.name': 'mse', 'optimizer.learning_rate': 1e-3,
                 'train.monitor': 'mse', 'train.plateau_factor': 0.1,
                 'train.early_stop_patience': 5, 'train.num_epochs': 25.0}),
    ('unet.py:demo', {'model.name': 'unet', 'train.num_train_steps': 600, 'data.crop_size': 64,
                      'train.batch_size': 16, 'train.early_stop_patience': 0,
                      'train.plateau_factor': 0.0, 'optimizer.schedule': 'cosine'}),
    ('resunet.py', {'model.name': 'resunet', 'optimizer.name': 'rmsprop', 'optimizer.rho': 0.9,
                    'loss.name': 'l1', 'optimizer.learning_rate': 1e-3}),
    ('resunet.py:demo', {'model.name': 'resunet', 'train.num_train_steps': 600,
                         'optimizer.name': 'rmsprop'}),
    ('autoencoder.py', {'model.name': 'autoencoder', 'loss.name': 'mse',
                        'train.plateau_factor': 0.1, 'data.crop_size': 256}),
    ('autoencoder.py:demo', {'model.name': 'autoencoder', 'model.base_features': 32,
                             'train.num_train_steps': 600}),
    ('autoencoder.py:attention', {'model.name': 'attention_autoencoder', 'data.crop_size': 224,
                                  'model.base_features': 64}),
    ('autoencoder.py:attention,demo', {'model.name': 'attention_autoencoder',
                                       'model.base_features': 32, 'data.crop_size': 64,
                                       'train.num_train_steps': 600}),
    ('gan.py', {'model.name': 'gan_generator', 'gan.discriminator.name': 'patchgan',
                'gan.loss': 'lsgan', 'gan.weight': 0.002, 'loss.name': 'mse',
                'optimizer.b1': 0.5, 'gan.optimizer.b1': 0.5}),
    ('gan.py:demo', {'model.base_features': 32, 'model.num_blocks': 3,
                     'gan.discriminator.base_features': 32, 'train.num_train_steps': 600,
                     'optimizer.learning_rate': 1e-3, 'gan.optimizer.learning_rate': 1e-4}),
    ('gan.py:tiny', {'model.base_features': 4, 'gan.discriminator.num_layers': 2,
                     'train.num_train_steps': 3}),
    ('nafnet.py', {'model.name': 'nafnet', 'model.width': 32, 'model.enc_blk_nums': (1, 1, 1, 28),
                   'model.tlc_train_size': 256, 'optimizer.name': 'adamw',
                   'optimizer.learning_rate': 1e-3, 'optimizer.b2': 0.9,
                   'optimizer.weight_decay': 1e-3, 'optimizer.schedule': 'cosine',
                   'optimizer.warmup_steps': 0, 'optimizer.end_learning_rate': 1e-7,
                   'optimizer.grad_clip_norm': 0.01, 'train.batch_size': 32,
                   'train.num_train_steps': 200_000, 'loss.name': 'psnr',
                   'data.augment': 'flips_rot90', 'eval.protocol': 'nafnet'}),
    ('nafnet.py:width64', {'model.width': 64, 'train.batch_size': 64,
                           'train.num_train_steps': 400_000}),
    ('nafnet.py:tiny', {'model.width': 8, 'model.enc_blk_nums': (1, 1), 'data.crop_size': 32,
                        'model.tlc_train_size': 32, 'train.num_train_steps': 3}),
    ('restormer.py', {'model.name': 'restormer', 'model.dim': 48, 'model.num_blocks': (4, 6, 6, 8),
                      'model.heads': (1, 2, 4, 8), 'model.ffn_expansion_factor': 2.66,
                      'model.layernorm_type': 'WithBias', 'optimizer.name': 'adamw',
                      'optimizer.learning_rate': 3e-4, 'optimizer.b2': 0.999,
                      'optimizer.weight_decay': 1e-4, 'optimizer.hold_steps': 92_000,
                      'optimizer.end_learning_rate': 1e-6, 'optimizer.grad_clip_norm': 0.01,
                      'train.num_train_steps': 300_000, 'loss.name': 'l1',
                      'data.augment': 'flips_rot90',
                      'data.stages': ((92_000, 128, 64), (64_000, 160, 40), (48_000, 192, 32),
                                      (36_000, 256, 16), (36_000, 320, 8), (24_000, 384, 8))}),
    ('restormer.py:denoising', {'model.layernorm_type': 'BiasFree', 'data.source': 'synthetic',
                                'data.synthetic.kernels': 'identity'}),
    ('restormer.py:deraining', {'data.blur_folder': 'input', 'eval.y_channel': True}),
    ('restormer.py:defocus', {'data.blur_folder': 'inputC', 'data.sharp_folder': 'target'}),
    ('restormer.py:dual_pixel', {'model.dual_pixel_task': True}),
    ('restormer.py:tiny', {'model.dim': 8, 'data.crop_size': 32, 'data.stages': (),
                           'train.num_train_steps': 3}),
    ('fftformer.py', {'model.name': 'fftformer', 'model.dim': 48,
                      'model.num_blocks': (6, 6, 12, 8), 'model.ffn_expansion_factor': 3.0,
                      'optimizer.name': 'adamw', 'optimizer.learning_rate': 1e-3,
                      'optimizer.b2': 0.9, 'optimizer.weight_decay': 1e-3,
                      'optimizer.end_learning_rate': 1e-7, 'optimizer.grad_clip_norm': 0.01,
                      'train.batch_size': 64, 'data.crop_size': 128, 'loss.name': 'mimo',
                      'train.num_train_steps': 300_000, 'data.augment': 'flips_rot90'}),
    ('fftformer.py:realblur', {'data.crop_size': 256, 'train.batch_size': 16,
                               'optimizer.learning_rate': 4e-4, 'eval.protocol': 'realblur'}),
    ('fftformer.py:tiny', {'model.dim': 8, 'data.crop_size': 32, 'train.num_train_steps': 3}),
    ('evssm.py', {'model.name': 'evssm', 'model.dim': 48, 'model.num_blocks': (6, 6, 12),
                  'model.windows': True, 'model.window_sizes': (384, 192, 96),
                  'optimizer.name': 'adamw', 'optimizer.learning_rate': 1e-3,
                  'optimizer.b2': 0.9, 'optimizer.weight_decay': 1e-3,
                  'optimizer.end_learning_rate': 1e-7, 'optimizer.grad_clip_norm': 0.01,
                  'train.batch_size': 32, 'data.crop_size': 128, 'loss.name': 'mimo',
                  'train.num_train_steps': 300_000, 'data.augment': 'flips_rot90'}),
    ('evssm.py:tiny', {'model.dim': 8, 'model.num_blocks': (1, 1, 1), 'data.crop_size': 32,
                       'train.num_train_steps': 3}),
]


def load(spec, *overrides):
  """The config of `--config=configs/SPEC OVERRIDES...`, parsed as the tools parse it."""
  argv = ['prog', f'--config={REPO / "deblur_jax" / "configs" / spec}', *overrides]
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values,
                                  lock_config=True, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def field(config, dotted):
  for key in dotted.split('.'):
    config = config[key]
  return config


@pytest.mark.parametrize('spec,values', DOCUMENTED, ids=[s for s, _ in DOCUMENTED])
def test_documented_configs_have_the_documented_values_and_reject_typos(spec, values):
  config = load(spec)
  assert set(config) == SECTIONS
  assert {k: field(config, k) for k in values} == values
  assert load(spec, '--config.train.batch_size=2').train.batch_size == 2
  with pytest.raises(AttributeError, match=r'batch_sizes.*Did you mean "batch_size"'):
    load(spec, '--config.train.batch_sizes=8')
  with pytest.raises(AttributeError):
    config.train.batch_sizes = 8  # locked: no new fields in code either


def test_variants_combine_with_commas_and_short_ones_share_one_recipe():
  assert load('mimo.py:plus,tiny').model.num_res == 1  # the short run shrinks last
  assert load('mimo.py:plus,tiny').model.dropout_rate == 0.1
  assert load('unet.py:demo').train.num_train_steps == 600  # the shared demo length
  for spec in ('unet.py:tiny', 'resunet.py:tiny', 'autoencoder.py:attention,tiny', 'gan.py:tiny'):
    config = load(spec)
    assert (config.data.crop_size, config.train.batch_size, config.train.num_train_steps,
            config.data.dir, config.data.source) == (32, 4, 3, '', 'auto')


@pytest.mark.parametrize('spec,message', [
    ('mimo.py:huge', r"Unknown variant 'huge' for configs/mimo\.py; choose from \['plus', "
                     r"'demo', 'tiny'\]"),
    ('unet.py:plus', r"Unknown variant 'plus' for configs/unet\.py; choose from \['demo', "
                     r"'tiny'\]"),
    ('autoencoder.py:demo,tiny', r"at most one of \['demo', 'tiny'\]"),
    ('gan.py:demo,demo', r"Unknown variant 'demo,demo'"),
    ('autoencoder.py:attention_demo', r"Unknown variant 'attention_demo'"),
])
def test_unknown_or_conflicting_variants_are_errors_naming_the_file(spec, message):
  with pytest.raises(ValueError, match=message):
    name, arg = spec.split(':')
    importlib.import_module(f'deblur_jax.configs.{name[:-3]}').get_config(arg)
  assert common.parse_arg(None, 'configs/x.py') == ()


def test_demo_config_trains_two_steps_on_the_embedded_photos(tmp_path):
  config = mimo.get_config('demo')
  config.train.num_train_steps = 2
  config.optimizer.warmup_steps = 1
  config.train.batch_size = 4
  config.data.max_eval_images = 1
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary['num_images'] == 1
  assert summary['input_psnr'] > 25  # a visible blur of a held-out photo
  assert (tmp_path / 'demo_data' / 'test' / 'gauss11' / 'sharp' / 'chelsea.png').exists()
