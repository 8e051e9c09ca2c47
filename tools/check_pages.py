"""Check that every notebook reads as a documentation page: the rules of CONTRIBUTING.md, measured.

For each notebook in `nbs/` (the landing page `index.ipynb` only for line length and references):
- a title `# ...` and a one-line summary `> ...` in the first cell;
- every exported `Config` class shows its field table (`config_table(Cls)` in a code cell);
- every public method that a class adds (or overrides with a docstring of its own) is documented with `show_doc` or
  written as a `@patch` function, as nbdev documents top-level functions only;
- a parameter whose default is `None` has a type annotation (else the docs show `NoneType`);
- code lines at most 100 characters, so code blocks do not scroll sideways;
- markdown cells at most 200 words, exported cells at most 60 lines and 25 on average: one idea per cell;
- at most 30 % of the visible code lines are checks (`test_*`, `assert`, `expect_fail`): walls of checks are hidden;
- no reference to documents outside the repository.
`python tools/check_pages.py` lists every problem; `--summary` prints one line per notebook.
"""
import ast, importlib, inspect, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
MAX_LINE, MAX_WORDS, MAX_EXPORT, MEAN_EXPORT, MAX_CHECKS = 100, 200, 60, 25, 0.30
DIRECTIVE = re.compile(r'^\s*#\|\s*(.*)$')
CHECK_LINE = re.compile(r'^\s*(test_\w+\(|assert\b|with expect_fail|with test_fail|test_fail\()')
OUTSIDE = re.compile(r'GWAE_SPEC|PEERS_AND_METRICS|DATASETS_OFFLINE|NBDEV_STYLE|DESIGN\.md|\bthe spec\b|\bspec §', re.I)

def directives(src:str)->list[str]: return [m.group(1).strip() for l in src.splitlines() if (m := DIRECTIVE.match(l))]
def body(src:str)->str: return '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l))

def documented_names(cells)->set[str]:
    "Names shown by show_doc calls (`Cls.method` and plain names) and functions written with @patch."
    out = set()
    for c in cells:
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        out |= set(re.findall(r'show_doc\(\s*([\w.]+)', src))
        for m in re.finditer(r'@patch(?:_to)?[^\n]*\n\s*def (\w+)\(self:\s*(\w+)', src): out.add(f"{m.group(2)}.{m.group(1)}")
        for m in re.finditer(r'@patch[^\n]*\n\s*@property\n\s*def (\w+)\(self:\s*(\w+)', src): out.add(f"{m.group(2)}.{m.group(1)}")
    return out

def own_public_methods(cls)->list[str]:
    "Public methods and properties `cls` adds, or overrides with a docstring of its own."
    names = []
    for name, v in vars(cls).items():
        if name.startswith('_'): continue
        f = v.fget if isinstance(v, property) else getattr(v, '__func__', v)
        if not (inspect.isfunction(f) or isinstance(v, property)): continue
        inherited = any(hasattr(b, name) for b in cls.__mro__[1:] if b is not object)
        if inherited and not (f.__doc__ and f.__doc__ != getattr(next(b for b in cls.__mro__[1:] if hasattr(b, name)), name).__doc__):
            continue
        names.append(name)
    return names

def untyped_none(node:ast.FunctionDef)->list[str]:
    args = node.args
    pos = args.posonlyargs + args.args
    pairs = list(zip(pos[len(pos) - len(args.defaults):], args.defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    return [a.arg for a, d in pairs if d is not None and isinstance(d, ast.Constant) and d.value is None and a.annotation is None]

def check(nb_path:Path)->tuple[list[str], dict]:
    cells = json.loads(nb_path.read_text())['cells']
    rel, problems = nb_path.relative_to(ROOT), []
    say = lambda i, msg: problems.append(f"{rel} cell {i}: {msg}")
    index = nb_path.name == 'index.ipynb'
    first = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown'), None)
    if not index and first is not None:
        lines = ''.join(cells[first]['source']).strip().splitlines()
        summary = [l for l in lines[1:] if l.strip()]
        if not lines[0].startswith('# '): say(first, "the first markdown cell must start with the page title '# ...'")
        if not summary or not summary[0].startswith('> ') or len(summary) > 1 or any(l.startswith('>') for l in summary[1:]):
            say(first, "the title must be followed by a one-line summary '> ...' (nbdev keeps only its first line)")
    module, exported_lines, visible, checks = None, [], 0, 0
    for i, c in enumerate(cells):
        src = ''.join(c['source'])
        if OUTSIDE.search(src): say(i, f"refers to a document outside the repository ({OUTSIDE.search(src).group(0)!r}); cite the paper or the official code")
        if c['cell_type'] == 'markdown':
            words = len(src.split())
            if words > MAX_WORDS and not index: say(i, f"{words} words of prose in one cell (at most {MAX_WORDS}): split it, one idea per cell")
            continue
        ds = directives(src)
        if (m := re.search(r'default_exp\s+(\S+)', ' '.join(ds))): module = m.group(1)
        for k, l in enumerate(body(src).splitlines()):
            if len(l) > MAX_LINE: say(i, f"line {k + 1} is {len(l)} characters (at most {MAX_LINE})")
        if any(d.startswith('export') for d in ds):
            n = len(body(src).strip().splitlines())
            exported_lines.append(n)
            if n > MAX_EXPORT: say(i, f"exported cell of {n} lines (at most {MAX_EXPORT}): split it, with prose between")
            for node in ast.walk(ast.parse(body(src))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (bad := untyped_none(node)):
                    say(i, f"{node.name}: parameter(s) {bad} default to None without a type annotation (the docs show NoneType)")
        elif not any(d in ('hide',) or d.startswith('export') for d in ds):
            lines = [l for l in body(src).splitlines() if l.strip()]
            visible += len(lines); checks += sum(bool(CHECK_LINE.match(l)) for l in lines)
    stats = dict(exported_mean=round(sum(exported_lines) / len(exported_lines), 1) if exported_lines else 0,
                 check_share=round(checks / visible, 2) if visible else 0)
    if not index and exported_lines and stats['exported_mean'] > MEAN_EXPORT:
        problems.append(f"{rel}: exported cells average {stats['exported_mean']} lines (at most {MEAN_EXPORT})")
    if not index and visible and stats['check_share'] > MAX_CHECKS:
        problems.append(f"{rel}: {stats['check_share']:.0%} of the visible code lines are checks (at most {MAX_CHECKS:.0%}); "
                        "hide the walls of checks (#| hide) or move them to tests/")
    if module:
        mod = importlib.import_module(f"gwae.{module}")
        shown = documented_names(cells)
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name, None)
            if not (inspect.isclass(obj) and obj.__module__ == mod.__name__): continue
            if any(b.__name__ == 'Config' for b in obj.__mro__[1:]) and f'config_table({name})' not in ''.join(
                    ''.join(c['source']) for c in cells if c['cell_type'] == 'code'):
                problems.append(f"{rel}: {name} is a Config: show its fields with a visible `config_table({name})` cell")
            for meth in own_public_methods(obj):
                if f"{name}.{meth}" not in shown:
                    problems.append(f"{rel}: {name}.{meth} is not on the page: add `show_doc({name}.{meth})` or write it with @patch")
    return problems, stats

if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))
    nbs = sorted(p for p in NBS.rglob('*.ipynb') if not any(s.startswith(('.', '_')) for s in p.relative_to(NBS).parts))
    if len(sys.argv) > 1 and sys.argv[1] != '--summary': nbs = [Path(a).resolve() for a in sys.argv[1:]]
    all_problems = []
    for nb in nbs:
        problems, stats = check(nb)
        all_problems += problems
        if '--summary' in sys.argv:
            print(f"{nb.name:28s} problems {len(problems):3d}  exported-cell mean {stats['exported_mean']:5.1f}  checks {stats['check_share']:.0%}")
    if '--summary' not in sys.argv: print('\n'.join(all_problems))
    if all_problems: sys.exit(f"FAIL: {len(all_problems)} page problem(s)")
