"""The jitted eval step: whole images of any size, scored per image."""

import jax
import numpy as np

from deblur_jax import models
from deblur_jax.configs import mimo
from deblur_jax.evaluation import eval_step
from deblur_jax.parallel import sharding


def test_eval_step_scores_any_image_size():
  mesh = sharding.create_mesh(jax.devices()[:4])
  model = models.build_model(mimo.get_config('tiny').model)
  variables = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False)
  eval_fn = eval_step.jit_eval_step(mesh, apply_fn=model.apply, size_multiple=4)
  rng = np.random.default_rng(0)
  sharp = rng.uniform(size=(4, 30, 27, 3)).astype(np.float32)  # 30x27: not a multiple of 4
  batch = {'blur': np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1).astype(np.float32),
           'sharp': sharp}
  out = eval_fn(variables, sharding.make_global_batch(batch, mesh))
  assert set(out) == {*eval_step.PER_IMAGE_METRICS, 'deblurred'}
  assert out['deblurred'].shape == (4, 30, 27, 3)
  assert float(out['deblurred'].min()) >= 0 and float(out['deblurred'].max()) <= 1
  assert out['psnr'].shape == out['ssim'].shape == (4,)
  error = (batch['blur'] - batch['sharp']) ** 2
  np.testing.assert_allclose(out['input_psnr'], -10 * np.log10(error.mean(axis=(1, 2, 3))),
                             rtol=1e-4)
  deblurred = np.asarray(out['deblurred'])
  np.testing.assert_allclose(out['mse'], ((deblurred - sharp) ** 2).mean(axis=(1, 2, 3)),
                             rtol=1e-5)
