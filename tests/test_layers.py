"""The package's folders form layers: a module imports from its own folder or lower
layers only, so data flows one way (docs/architecture.md) and no folders tie in a circle."""

import ast

from helpers import REPO

# Lowest first. The commands at the top level of the package may import anything.
LAYERS = (('core',), ('configs', 'cli', 'parallel'), ('models',), ('data',), ('weights',),
          ('evaluation',), ('training', 'inference'), ('profiling',))
RANK = {folder: rank for rank, folders in enumerate(LAYERS) for folder in folders}


def imported_folders(path):
  """(line, folder of deblur_jax) of every import in `path`, also those inside functions."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('deblur_jax'):
      parts = node.module.split('.')[1:]
      names = parts[:1] or [alias.name for alias in node.names]
      yield from ((node.lineno, name) for name in names)
    elif isinstance(node, ast.Import):
      for alias in node.names:
        parts = alias.name.split('.')
        if parts[0] == 'deblur_jax' and len(parts) > 1:
          yield node.lineno, parts[1]


def test_every_folder_has_a_layer():
  package = REPO / 'deblur_jax'
  folders = {p.name for p in package.iterdir() if (p / '__init__.py').exists()}
  assert folders == set(RANK)


def test_no_import_runs_up_or_across_a_layer():
  upward = []
  for path in sorted((REPO / 'deblur_jax').rglob('*.py')):
    folder = path.relative_to(REPO / 'deblur_jax').parts[0]
    if folder not in RANK:
      continue  # a command at the top
    for line, target in imported_folders(path):
      if target in RANK and target != folder and RANK[target] >= RANK[folder]:
        upward.append(f'{path.relative_to(REPO)}:{line} imports {target}')
  assert not upward, upward


def test_the_top_level_holds_only_the_commands():
  top = sorted(p.stem for p in (REPO / 'deblur_jax').glob('*.py') if p.stem != '__init__')
  for name in top:
    assert "if __name__ == '__main__':" in (REPO / 'deblur_jax' / f'{name}.py').read_text(), name


def test_no_two_modules_share_a_name():
  """Config files are the exception: data named by path (`configs/nafnet.py`) after the
  model they train, never imported by the library."""
  names = [p.stem for p in (REPO / 'deblur_jax').rglob('*.py')
           if p.stem != '__init__' and p.parent.name != 'configs']
  assert sorted({n for n in names if names.count(n) > 1}) == []
