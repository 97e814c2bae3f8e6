"""The README's layout section names every module of the package."""

from helpers import REPO


def named(path, layout: str) -> bool:
  """A module is named by its file name, or, alone in its folder, by the folder's."""
  if path.name in layout:
    return True
  siblings = [p for p in path.parent.glob('*.py') if p.name != '__init__.py']
  return len(siblings) == 1 and f'{path.parent.name}/' in layout


def test_the_layout_section_names_every_module():
  readme = (REPO / 'README.md').read_text()
  start = readme.index('## Layout')
  layout = readme[start:readme.index('\n## ', start + 1)]
  unnamed = [str(path.relative_to(REPO)) for path in sorted((REPO / 'deblur_jax').rglob('*.py'))
             if path.name != '__init__.py' and not named(path, layout)]
  assert not unnamed, f'README.md "Layout" does not name {unnamed}'
