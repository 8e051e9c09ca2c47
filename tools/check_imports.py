"""Fail if any notebook code cell or Python file imports torchvision or fastai.vision.

torchvision's compiled operators do not load against the CPU build of torch this project pins, and `fastai.vision`
imports torchvision, so either import breaks the package on CPU machines. Imports are found by parsing the code
(`ast`), so prose that merely mentions them is not flagged.
"""
import ast, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ('torchvision', 'fastai.vision')

def forbidden(name:str)->bool: return any(name == f or name.startswith(f + '.') for f in FORBIDDEN)

def imports(src:str)->list[tuple[int, str]]:
    "(line, module) for every import in `src`; IPython magics and shell lines are blanked first."
    src = '\n'.join('' if l.lstrip().startswith(('%', '!')) else l for l in src.splitlines())
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import): out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out

def sources(root:Path):
    for p in sorted(root.rglob('*.ipynb')):
        if any(part.startswith('.') or part in ('_proc', '_docs') for part in p.relative_to(root).parts): continue
        for i, c in enumerate(json.loads(p.read_text())['cells']):
            if c['cell_type'] == 'code': yield f"{p.relative_to(root)} cell {i}", ''.join(c['source'])
    for folder in ('gwae', 'tests', 'bench', 'tools'):
        for p in sorted((root/folder).rglob('*.py')): yield str(p.relative_to(root)), p.read_text()

hits = [f"{where}:{line}: imports {mod}" for where, src in sources(ROOT) for line, mod in imports(src) if forbidden(mod)]
if hits:
    print('\n'.join(hits))
    sys.exit("FAIL: torchvision / fastai.vision imported above (their compiled ops do not load on the CPU torch)")
