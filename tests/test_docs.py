"""The README and docs/*.md stay true to the code: every documented command names a
tool that exists and only flags that tool defines, every relative link resolves, the
layout in docs/architecture.md names every module, and no page carries a date (nor
the README a commit hash): history is git's."""

import functools
import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from helpers import REPO

PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
README_MAX_LINES = 250

FENCE = re.compile(r'^```[^\n]*\n(.*?)^```', re.M | re.S)
INLINE_CODE = re.compile(r'(`+)(.+?)\1', re.S)
MODULE_COMMAND = re.compile(r'\bpython[\d.]*\s+-m\s+(deblur_jax(?:\.[a-z_][a-z0-9_]*)+)(?![\w.])')
SCRIPT_COMMAND = re.compile(r'(?<![\w./-])(deblur-[a-z0-9]+(?:-[a-z0-9]+)*)(?![\w-])')
COMMAND_END = re.compile(r'\s(?:&&|\|\||;|\||#)\s')  # the next shell command or a comment
FLAG = re.compile(r'(?<![\w-])--([A-Za-z][\w.-]*)')
DATE = re.compile(r'\b20\d\d-\d\d-\d\d\b')
HASH = re.compile(r'`([0-9a-f]{7,12})`|\b(?:[Aa]t|[Cc]ommit)\s+([0-9a-f]{7,12})\b')
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def rel(path) -> str:
  return str(path.relative_to(REPO))


def code_segments(text: str) -> list[str]:
  """The shell text of a page: each logical line of its fenced blocks (backslash
  continuations joined) and each inline code span."""
  segments = []
  for block in FENCE.findall(text):
    segments += block.replace('\\\n', ' ').splitlines()
  segments += [span.replace('\n', ' ') for _, span in INLINE_CODE.findall(FENCE.sub('', text))]
  return segments


@functools.lru_cache(maxsize=None)
def console_scripts() -> dict[str, str]:
  """pyproject.toml's [project.scripts]: console script -> module."""
  text = (REPO / 'pyproject.toml').read_text()
  section = text.split('[project.scripts]', 1)[1].split('\n[', 1)[0]
  return dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.]+):\w+"', section, re.M))


def documented_commands() -> list[tuple[str, str, str, list[str]]]:
  """(page, what is written, its module, the flags written after it) per command."""
  found = []
  for page in PAGES:
    for segment in code_segments(page.read_text()):
      starts = [(m.start(), m.end(), m.group(0), m.group(1))
                for m in MODULE_COMMAND.finditer(segment)]
      starts += [(m.start(), m.end(), m.group(1), console_scripts().get(m.group(1)))
                 for m in SCRIPT_COMMAND.finditer(segment)]
      for start, end, written, module in sorted(starts):
        rest = segment[end:]
        stop = COMMAND_END.search(rest)
        rest = rest[:stop.start()] if stop else rest
        following = [s for s, *_ in starts if s > start]
        if following:
          rest = rest[:min(following) - end]
        found.append((rel(page), written, module, FLAG.findall(rest)))
  return found


COMMANDS = documented_commands()


def test_pages_document_commands():
  assert any(module == 'deblur_jax.main' for _, _, module, _ in COMMANDS), COMMANDS


def is_runnable_module(name: str) -> bool:
  """Whether `python -m name` finds something to run."""
  try:
    spec = importlib.util.find_spec(name)
  except ModuleNotFoundError:
    return False
  if spec is None:
    return False
  return (not spec.submodule_search_locations
          or importlib.util.find_spec(f'{name}.__main__') is not None)


@pytest.mark.parametrize('page,written,module', sorted({c[:3] for c in COMMANDS}, key=str))
def test_documented_commands_exist(page, written, module):
  assert module is not None, (f'{page}: {written} is not a console script of pyproject.toml '
                              f'(it has {sorted(console_scripts())})')
  assert is_runnable_module(module), f'{page}: {written}: there is no module {module}'


@pytest.fixture(scope='module')
def tool_flags() -> dict[str, set[str]]:
  """module -> the flags `python -m module` accepts, read from absl's --helpxml in one
  process per tool (two tools in one process would clash on flags of the same name),
  all started at once."""
  modules = sorted({m for _, _, m, flags in COMMANDS if flags and m and is_runnable_module(m)})
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  running = {m: subprocess.Popen([sys.executable, '-m', m, '--helpxml'], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in modules}
  defined = {}
  for module, process in running.items():
    out, err = process.communicate(timeout=300)
    try:
      root = ElementTree.fromstring(out)
    except ElementTree.ParseError:
      pytest.fail(f'python -m {module} --helpxml printed no flags:\n{err[-2000:]}')
    defined[module] = {e.text for e in root.iter() if e.tag in ('name', 'short_name')}
  return defined


@pytest.mark.parametrize('page,written,module,flags', [c for c in COMMANDS if c[3]],
                         ids=lambda x: x if isinstance(x, str) else ' '.join(x))
def test_documented_flags_exist(page, written, module, flags, tool_flags):
  if module not in tool_flags:
    pytest.skip(f'{written} does not exist (test_documented_commands_exist)')
  known = tool_flags[module]
  unknown = [f'--{flag}' for flag in flags
             if not flag.startswith('config.') and flag.split('=')[0] not in known
             and not (flag.startswith('no') and flag[2:] in known)]
  assert not unknown, f'{page}: {written} has no flags {unknown}'


def heading_anchors(page) -> set[str]:
  """GitHub's anchors of a Markdown page's headings."""
  headings = re.findall(r'^#+\s+(.+?)\s*$', FENCE.sub('', page.read_text()), re.M)
  return {re.sub(r'[^\w\- ]', '', h.lower()).replace(' ', '-') for h in headings}


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_relative_links_point_at_existing_files_and_headings(page):
  broken = []
  for target in LINK.findall(FENCE.sub('', page.read_text())):
    if re.match(r'[a-z]+:', target) or target.startswith('#'):
      continue
    path, _, anchor = target.partition('#')
    linked = (page.parent / path).resolve()
    if not linked.exists():
      broken.append(f'{target} (no file {linked})')
    elif anchor and linked.suffix == '.md' and anchor not in heading_anchors(linked):
      broken.append(f'{target} (no heading #{anchor} in {path})')
  assert not broken, f'{rel(page)} links to {broken}'


def test_readme_is_a_front_page():
  lines = (REPO / 'README.md').read_text().splitlines()
  assert len(lines) <= README_MAX_LINES, f'README.md has {len(lines)} lines'


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_pages_carry_no_dates(page):
  dates = DATE.findall(page.read_text())
  assert not dates, f'{rel(page)} has dates {dates}: history is git\'s'


def test_readme_carries_no_commit_hashes():
  tokens = [a or b for a, b in HASH.findall((REPO / 'README.md').read_text())]
  hashes = [t for t in tokens if re.search(r'\d', t) and re.search(r'[a-f]', t)]
  assert not hashes, f'README.md has commit hashes {hashes}'


def layout_section() -> str:
  text = (REPO / 'docs' / 'architecture.md').read_text()
  start = text.index('## Package layout')
  end = text.find('\n## ', start + 1)
  return text[start:end if end >= 0 else len(text)]


def names(file_name: str, layout: str) -> bool:
  return re.search(rf'(?<![\w.]){re.escape(file_name)}(?!\w)', layout) is not None


def named(path, layout: str) -> bool:
  """A module is named by its file name, or, alone in its folder, by the folder's."""
  if names(path.name, layout):
    return True
  siblings = [p for p in path.parent.glob('*.py') if p.name != '__init__.py']
  return len(siblings) == 1 and names(f'{path.parent.name}/', layout)


def test_the_layout_names_every_module():
  layout = layout_section()
  unnamed = [rel(path) for path in sorted((REPO / 'deblur_jax').rglob('*.py'))
             if path.name != '__init__.py' and not named(path, layout)]
  assert not unnamed, f'docs/architecture.md "Package layout" does not name {unnamed}'


def test_the_layout_names_only_modules_that_exist():
  modules = {path.name for path in (REPO / 'deblur_jax').rglob('*.py')}
  layout = layout_section()
  gone = sorted(set(re.findall(r'(?<![\w.])(\w+\.py)\b', layout)) - modules)
  assert not gone, f'docs/architecture.md "Package layout" names missing modules {gone}'
