"""The README and docs/*.md stay true to the code: every documented command names a
tool that exists and only flags that tool defines, every relative link resolves, the
layout in docs/architecture.md names every module, and no page carries a date (nor
the README a commit hash): history is git's."""

import ast
import functools
import importlib.util
import os
import pathlib
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


def _string_arg(call: ast.Call) -> str | None:
  arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == 'name'),
                                            None)
  return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


@functools.lru_cache(maxsize=None)
def defined_flags(module: str, function: str | None = None) -> frozenset[str]:
  """The flags `module` defines (or, given `function`, that function): the name of every
  DEFINE_* call in it, at module level or inside functions, and of those in the functions
  of deblur_jax modules it calls (command_line.define_checkpoint_flags, ...). Read from
  the source: importing two tools into one process would clash on flags of the same
  name, and a process per tool costs seconds each (test_flag_reader_agrees_with_absl)."""
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.origin or not spec.origin.endswith('.py'):
    return frozenset()
  tree = ast.parse(pathlib.Path(spec.origin).read_text())
  imported = {}  # local name -> the deblur_jax module it names
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('deblur_jax'):
      imported.update({a.asname or a.name: f'{node.module}.{a.name}' for a in node.names})
    elif isinstance(node, ast.Import):
      imported.update({a.asname: a.name for a in node.names
                       if a.asname and a.name.startswith('deblur_jax')})
  if function is not None:
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function]
    tree = ast.Module(body=body, type_ignores=[])
  names = set()
  for node in ast.walk(tree):
    if not isinstance(node, ast.Call):
      continue
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
    if called.startswith('DEFINE') and _string_arg(node):
      names.add(_string_arg(node))
    elif isinstance(func, ast.Attribute) and getattr(func.value, 'id', None) in imported:
      names |= defined_flags(imported[func.value.id], func.attr)
    elif isinstance(func, ast.Name) and func.id in imported:  # from deblur_jax.x import f
      owner, _, name = imported[func.id].rpartition('.')
      names |= defined_flags(owner, name)
  return frozenset(names)


def helpxml_flags(output: str) -> dict[str, set[str]]:
  """The flags of absl's --helpxml output by who defines them: {'deblur_jax': ...,
  'others': ...} (absl's own, and any a library defines)."""
  found = {'deblur_jax': set(), 'others': set()}
  for flag in ElementTree.fromstring(output).iter('flag'):
    where = flag.findtext('file') or ''
    ours = where.startswith('deblur_jax.') or 'deblur_jax' in pathlib.Path(where).parts
    owner = 'deblur_jax' if ours else 'others'
    found[owner].update(flag.findtext(tag) for tag in ('name', 'short_name')
                        if flag.findtext(tag))
  return found


def run_helpxml(*command: str) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  return subprocess.Popen([sys.executable, *command, '--helpxml'], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def absl_builtin_flags() -> set[str]:
  """The flags absl defines for every program (--helpfull, --logtostderr, ...), from a
  process that imports absl alone."""
  out, err = run_helpxml('-c', 'import sys; from absl import app, logging; '
                         'app.run(lambda argv: None, argv=sys.argv)').communicate(timeout=120)
  assert '<AllFlags>' in out, err
  return helpxml_flags(out)['others']


@pytest.mark.parametrize('module', ['deblur_jax.synthesize', 'deblur_jax.predict'])
def test_flag_reader_agrees_with_absl(module):
  """On tools that define flags inside a function (synthesize) and through
  command_line's helper (predict): the source reader finds what absl has."""
  out, err = run_helpxml('-m', module).communicate(timeout=300)
  assert '<AllFlags>' in out, err
  assert set(defined_flags(module)) == helpxml_flags(out)['deblur_jax']


@pytest.mark.parametrize('page,written,module,flags', [c for c in COMMANDS if c[3]],
                         ids=lambda x: x if isinstance(x, str) else ' '.join(x))
def test_documented_flags_exist(page, written, module, flags, absl_builtin_flags):
  if module is None or not is_runnable_module(module):
    pytest.skip(f'{written} does not exist (test_documented_commands_exist)')
  known = defined_flags(module) | absl_builtin_flags
  unknown = [f'--{flag}' for flag in flags
             if not flag.startswith('config.') and flag.split('=')[0] not in known
             and not (flag.startswith('no') and flag[2:] in known)]
  assert not unknown, f'{page}: {written} has no flags {unknown} (it has {sorted(known)})'


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
  files = {path.name for folder in ('deblur_jax', 'tests')
           for path in (REPO / folder).rglob('*.py')}
  layout = layout_section()
  gone = sorted(set(re.findall(r'(?<![\w.])([a-z0-9_]+\.py)\b', layout)) - files)
  assert not gone, f'docs/architecture.md "Package layout" names files that do not exist: {gone}'
