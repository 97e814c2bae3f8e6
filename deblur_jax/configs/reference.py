"""docs/configuration.md, written from the configs' own comments.

  python -m deblur_jax.configs.reference > docs/configuration.md

Every field of `common.base_config()` and of each model config's `model` section is
listed with its default and the comment written beside it (or on the lines just above
it) in the config file. tests/configs/test_reference.py fails when the page is stale or
a field has no comment.
"""

import importlib
import inspect
import re

from deblur_jax.configs import common

MODEL_CONFIGS = ('mimo', 'nafnet', 'restormer', 'fftformer', 'evssm', 'unet', 'resunet',
                 'autoencoder', 'gan')

# `config.a.b = value  # comment`, `optimizer.b = ...` or `b=value,  # comment` (a dict(...)).
_ASSIGNMENT = re.compile(r'^\s*(?:[\w.]*\.)?(\w+)\s*=\s*(?!=).*?(?:#\s*(.*))?$')
_COMMENT = re.compile(r'^\s*#\s?(.*)$')


def field_comments(source: str) -> dict[str, str]:
  """Field name -> its comment: the comment at the end of its line, or else the comment
  lines just above the group of assignments it belongs to. A name assigned twice keeps
  its first comment."""
  comments, above = {}, []
  in_group = False
  for line in source.splitlines():
    comment = _COMMENT.match(line)
    if comment:
      above = above + [comment.group(1).strip()] if not in_group else [comment.group(1).strip()]
      in_group = False
      continue
    match = _ASSIGNMENT.match(line)
    if not match:
      above, in_group = [], False
      continue
    text = (match.group(2) or '').strip() or ' '.join(above)
    if text and match.group(1) not in comments:
      comments[match.group(1)] = text
    in_group = True
  return comments


def _rows(section, comments: dict[str, str], prefix: str,
          inherited: str = '') -> list[tuple[str, str, str]]:
  """A section's fields; those of a sub-section made in one line share its comment."""
  rows = []
  for name, value in section.items():
    if hasattr(value, 'items'):
      rows += _rows(value, comments, f'{prefix}{name}.', comments.get(name, inherited))
    else:
      rows.append((f'{prefix}{name}', repr(value), comments.get(name, inherited)))
  return rows


def _table(rows) -> list[str]:
  lines = ['| field | default | what it sets |', '| --- | --- | --- |']
  for name, value, text in rows:
    text = text.replace('|', '\\|')
    lines.append(f'| `{name}` | `{value}` | {text} |')
  return lines


def sections() -> dict[str, list[tuple[str, str, str]]]:
  """Section title -> (dotted field, default, comment) rows."""
  base = common.base_config()
  comments = field_comments(inspect.getsource(common))
  out = {}
  for key, value in base.items():
    if key == 'model':
      continue
    out[f'`{key}`'] = (_rows(value, comments, f'{key}.') if hasattr(value, 'items')
                       else [(key, repr(value), comments.get(key, ''))])
  for name in MODEL_CONFIGS:
    module = importlib.import_module(f'deblur_jax.configs.{name}')
    config = module.get_config()
    out[f'`model` in configs/{name}.py'] = _rows(
        config.model, field_comments(inspect.getsource(module)), 'model.')
  return out


def render() -> str:
  """The whole page."""
  lines = ['# Configuration reference', '',
           'Every field a config holds, with its default and what it sets, generated from the',
           "comments in `deblur_jax/configs/` by `python -m deblur_jax.configs.reference` (a test",
           'fails when this page is stale). Override any field on the command line, e.g.',
           '`--config.optimizer.learning_rate=2e-4`; a misspelt field is an error. How configs and',
           'their variants work: [training.md](training.md#configuration).']
  for title, rows in sections().items():
    lines += ['', f'## {title}', '', *_table(rows)]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  print(render(), end='')
