"""Run every step of the docs build that needs no Quarto, and fail if one breaks or changes committed files.

nbdev's docs build is: refresh `nbs/nbdev.yml` and `nbs/_quarto.yml` from `pyproject.toml`, rebuild the symbol index,
write `nbs/sidebar.yml`, then pre-process every notebook into `_proc/` (directives, `show_doc` cells, exported-symbol
docs), and finally hand `_proc/` to Quarto. Quarto cannot be installed offline, so CI stops before that last step;
everything before it runs here, so a broken `show_doc`, directive or doc link fails CI, not the docs deploy.
"""
import os, sys
from pathlib import Path

from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar, proc_nbs
import nbdev.doclinks

cfg = get_config()
os.chdir(cfg.config_path)
nbs = cfg.nbs_path
generated = [nbs/'nbdev.yml', nbs/'_quarto.yml', nbs/'sidebar.yml']
before = {p: p.read_text() if p.exists() else None for p in generated}

refresh_quarto_yml()
nbdev.doclinks._build_modidx()
nbdev_sidebar.__wrapped__(path=nbs)
cache = proc_nbs(nbs, n_workers=0, force=True)

problems = []
for p in generated:
    if p.read_text() != before[p]:
        problems.append(f"{p.relative_to(cfg.config_path)} changed: commit the regenerated file (python tools/check_docs.py writes it)")
notebooks = sorted(p for p in nbs.rglob('*.ipynb') if not any(part.startswith(('.', '_')) for part in p.relative_to(nbs).parts))
for nb in notebooks:
    out = cache/nb.relative_to(nbs)
    if not out.exists(): problems.append(f"{nb.relative_to(cfg.config_path)} was not processed into {out}")
print(f"processed {len(notebooks)} notebooks into {cache.relative_to(cfg.config_path)}/")
if problems:
    print("\n".join(f"FAIL: {p}" for p in problems))
    sys.exit(1)
