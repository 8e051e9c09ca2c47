"""Fail if a module imports a module of a later notebook (or its own package in a cycle).

The notebooks are a reading order: each may build on the ones before it, never on one after it. Every exported cell
of every notebook is parsed (`ast`, so prose is not flagged), and each `gwae.X` it imports, at the top of the module
or inside a function, must come from a notebook that sorts before it. Cells that are not exported (examples and tests) may import
anything, `gwae.test_utils` included.
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
EXPORT = re.compile(r'^\s*#\|\s*export[is]?\s*$', re.M)
DEFAULT_EXP = re.compile(r'^\s*#\|\s*default_exp\s+(\S+)', re.M)

def notebooks()->list[Path]:
    "The notebooks in nbdev's export order (sorted by file name), skipping folders and files nbdev skips."
    return sorted((p for p in NBS.rglob('*.ipynb') if not any(s.startswith(('.', '_')) for s in p.relative_to(NBS).parts)),
                  key=lambda p: p.name)

def module_and_imports(nb:Path)->tuple[str|None, list[tuple[int, str]]]:
    "The notebook's module and the (cell, gwae module) pairs its exported cells import."
    cells = json.loads(nb.read_text())['cells']
    module, found = None, []
    for i, c in enumerate(cells):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source'])
        if (m := DEFAULT_EXP.search(src)): module = m.group(1)
        if not EXPORT.search(src): continue
        body = '\n'.join('' if l.lstrip().startswith(('%', '!', '#|')) else l for l in src.splitlines())
        for node in ast.walk(ast.parse(body)):
            names = []
            if isinstance(node, ast.Import): names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0: names = [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level: names = [f"gwae.{node.module}"] if node.module else []
            found += [(i, n.split('.')[1]) for n in names if n.startswith('gwae.') and n.count('.') >= 1]
    return module, found

def check()->list[str]:
    order, problems, seen = {}, [], []
    for nb in notebooks():
        module, imports = module_and_imports(nb)
        if module is None: continue
        order[module] = len(order)
        seen.append((nb, module, imports))
    for nb, module, imports in seen:
        for cell, other in imports:
            if other == module: continue
            if other not in order:
                problems.append(f"{nb.relative_to(ROOT)} cell {cell}: imports gwae.{other}, which no notebook exports")
            elif order[other] > order[module]:
                problems.append(f"{nb.relative_to(ROOT)} cell {cell}: gwae.{module} imports gwae.{other}, a later notebook; "
                                f"move the shared code to an earlier notebook or the import to a later one")
    return problems

if __name__ == '__main__':
    problems = check()
    if problems:
        print('\n'.join(problems))
        sys.exit("FAIL: imports run against the notebook order (above)")
