"""VGG features for the perceptual loss: the layer table and the features of each
layer. The weights converter and the .npz loader are tested in tests/weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deblur_jax.models import vgg


@pytest.mark.parametrize('network,num_convs,num_params', [
    ('vgg16', 13, 14_714_688), ('vgg19', 16, 20_024_384)])
def test_the_conv_tables_are_torchvisions(network, num_convs, num_params):
  shapes = vgg.param_shapes(network)
  assert len(shapes) == 2 * num_convs
  assert sum(np.prod(s) for s in shapes.values()) == num_params
  table = vgg.layers(network)
  assert ('conv3_3', 14, 'conv', 256) in table and ('relu3_3', 15, 'relu', 256) in table
  assert table[-1][:3] == ('pool5', len(table) - 1, 'pool')


@pytest.mark.parametrize('network', ['vgg16', 'vgg19'])
def test_features_at_conv3_3_and_the_params_they_need(network):
  model = vgg.VGGFeatures(network=network, layer='conv3_3')
  images = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), images)
  shapes = {f'{m}/{n}': leaf.shape for m, p in variables['params'].items()
            for n, leaf in p.items()}
  assert shapes == vgg.param_shapes(network, 'conv3_3')
  assert len(shapes) == 2 * 7  # conv1_1 .. conv3_3
  assert jax.eval_shape(model.apply, variables, images).shape == (2, 8, 8, 256)
  pooled = vgg.VGGFeatures(network=network, layer='pool5')
  assert jax.eval_shape(pooled.init_with_output, jax.random.key(0), images)[0].shape == \
      (2, 1, 1, 512)
