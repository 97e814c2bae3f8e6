"""A paper's results table from scores.json summaries: one column pair (PSNR, SSIM)
per benchmark, the protocol named under each benchmark, as Markdown and LaTeX."""

TABLE_FILES = ('table.md', 'table.tex')


def _cells(scores: dict) -> tuple[str, str]:
  means = scores['means']
  return f"{means['psnr']:.2f}", f"{means['ssim']:.4f}"


def markdown(method: str, benchmarks: list[tuple[str, dict]]) -> str:
  """`benchmarks`: (name, scores.json summary) in column order."""
  header = ['method', *(f'{name} PSNR / SSIM' for name, _ in benchmarks)]
  protocols = ['protocol', *(f"`{s['protocol']}` ({s['means']['count']} images)"
                             for _, s in benchmarks)]
  row = [method, *(' / '.join(_cells(s)) for _, s in benchmarks)]
  lines = [header, ['---'] * len(header), row, protocols]
  return '\n'.join('| ' + ' | '.join(cells) + ' |' for cells in lines) + '\n'


def _latex_escape(text: str) -> str:
  for char in '\\&%$#_{}':
    text = text.replace(char, '\\' + char)
  return text


def latex(method: str, benchmarks: list[tuple[str, dict]]) -> str:
  """A booktabs tabular: benchmarks over PSNR / SSIM column pairs, the protocols
  under the names."""
  columns = 'l' + 'cc' * len(benchmarks)
  names = ' & '.join(f'\\multicolumn{{2}}{{c}}{{{_latex_escape(n)}}}' for n, _ in benchmarks)
  protocols = ' & '.join(f"\\multicolumn{{2}}{{c}}{{\\scriptsize {_latex_escape(s['protocol'])}}}"
                         for _, s in benchmarks)
  metrics = ' & '.join('PSNR & SSIM' for _ in benchmarks)
  values = ' & '.join(' & '.join(_cells(s)) for _, s in benchmarks)
  rules = ' '.join(f'\\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}' for i in range(len(benchmarks)))
  return '\n'.join([
      f'\\begin{{tabular}}{{{columns}}}', '\\toprule',
      f' & {names} \\\\', f' & {protocols} \\\\', rules, f'Method & {metrics} \\\\', '\\midrule',
      f'{_latex_escape(method)} & {values} \\\\', '\\bottomrule', '\\end{tabular}', ''])
