"""docs/configuration.md is what the configs' comments say, and every field has one."""

from deblur_jax.configs import reference
from helpers import REPO


def test_the_configuration_page_is_generated_from_the_configs():
  page = (REPO / 'docs' / 'configuration.md').read_text()
  assert page == reference.render(), (
      'docs/configuration.md is stale: python -m deblur_jax.configs.reference > '
      'docs/configuration.md')


def test_every_config_field_has_a_comment():
  missing = [name for rows in reference.sections().values() for name, _, text in rows
             if not text]
  assert not missing, f'fields without a comment in deblur_jax/configs: {missing}'


def test_comments_come_from_the_line_or_the_block_above_its_group():
  source = '''
  # Shared by the group.
  config.a = 1
  config.b = 2  # Its own.

  config.c = 3
'''
  assert reference.field_comments(source) == {'a': 'Shared by the group.', 'b': 'Its own.'}
