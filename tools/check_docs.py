"""Run every step of the docs build that needs no Quarto, and fail if one breaks or changes committed files.

nbdev's docs build is: refresh `nbs/nbdev.yml` and `nbs/_quarto.yml` from `pyproject.toml`, rebuild the symbol index,
then pre-process every notebook into `_proc/` (directives, `show_doc` cells, exported-symbol
docs), and finally hand `_proc/` to Quarto. Quarto cannot be installed offline, so CI stops before that last step;
everything before it runs here, so a broken `show_doc`, directive or doc link fails CI, not the docs deploy. A cell
that mixes imports with other code also fails: the docs build runs such cells, which breaks pages in subtle ways.
The sidebar (`nbs/sidebar.yml`) is written by hand in sections (`custom_sidebar = true`); every notebook must be in it.
"""
import os, sys, warnings

import yaml
from pathlib import Path

from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml, proc_nbs
import nbdev.doclinks

cfg = get_config()
os.chdir(cfg.config_path)
nbs = cfg.nbs_path
generated = [nbs/'nbdev.yml', nbs/'_quarto.yml']
before = {p: p.read_text() if p.exists() else None for p in generated}

refresh_quarto_yml()
nbdev.doclinks._build_modidx()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    cache = proc_nbs(nbs, n_workers=0, force=True)

problems = [f"{w.message}".split('\n---\n')[0] + ': ' + f"{w.message}".split('\n---\n')[1].splitlines()[0]
            for w in caught if 'imports and other code' in str(w.message)]
for p in generated:
    if p.read_text() != before[p]:
        problems.append(f"{p.relative_to(cfg.config_path)} changed: commit the regenerated file (python tools/check_docs.py writes it)")
notebooks = sorted(p for p in nbs.rglob('*.ipynb') if not any(part.startswith(('.', '_')) for part in p.relative_to(nbs).parts))
def sidebar_files(items)->list[str]:
    out = []
    for it in items:
        if isinstance(it, str): out.append(it)
        elif isinstance(it, dict): out += sidebar_files(it.get('contents', []))
    return out
listed = sidebar_files(yaml.safe_load((nbs/'sidebar.yml').read_text())['website']['sidebar']['contents'])
for nb in notebooks:
    if str(nb.relative_to(nbs)) not in listed: problems.append(f"{nb.relative_to(cfg.config_path)} is not in nbs/sidebar.yml: add it to its section")
    out = cache/nb.relative_to(nbs)
    if not out.exists(): problems.append(f"{nb.relative_to(cfg.config_path)} was not processed into {out}")
print(f"processed {len(notebooks)} notebooks into {cache.relative_to(cfg.config_path)}/")
if problems:
    print("\n".join(f"FAIL: {p}" for p in problems))
    sys.exit(1)
