"""Seconds per training step of GWAE (each prior) and of a VAE with the same encoder/decoder, on CPU.

Batch 64 of 64×64×3 random images, z_dim 64. Every model trains with the reference loop of `gwae.models`
(`main_update`, then `extra_updates`: for GWAE one main update plus 5 critic updates, timed separately). For each
model: the median over `--steps` timed steps after `--warmup` untimed ones with 1 torch thread, and over
`--steps-multi` timed steps with 2 threads. Also: the GW term's share of the step (timed alone, with the naive
official form for comparison), and each model's peak resident memory (each model runs in its own subprocess so the
peaks do not mix). Only the neural-prior GWAE is compared with the official figure (the official measurement is of
the neural prior); every model is compared with the VAE measured in the same run. The 1-minute load average is read
before the run; above 1.2 the table is flagged as unreliable. Prints a markdown table and writes it to
`bench/results/step_time.md` (not in `--quick` mode, which only checks that the benchmark runs).

    python bench/step_time.py            # under 3 minutes on a quiet 2-core machine
    python bench/step_time.py --quick    # one warm-up and one timed step, 1 thread, nothing written
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

OFFICIAL = {  # official code, neural prior, on the same machine kind (2 vCPU AMD EPYC Zen 3, torch 2.13.0 CPU), from DESIGN.md
    1: dict(gwae=3.41, vae=0.45),
    2: dict(gwae=1.87, vae=0.245),
}
MODELS = ['gwae-neural', 'gwae-neural-fused', 'gwae-factorized_neural', 'gwae-gm', 'gwae-factorized_normal', 'vae']
MAX_LOAD = 1.2  # 1-minute load average above which the timings are not trusted

def _cpu_model()->str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'

def _build(name:str):
    "The model called `name` (`gwae-<prior>[-fused]` or `vae`) and its optimizers."
    from gwae.gwae import GWAE
    from gwae.baselines import VAE
    from gwae.models import build_optimizers
    if name == 'vae': m = VAE((3, 64, 64), z_dim=64)  # official nets, ½‖x − x̂‖² + KL, Adam 1e-4
    else:
        prior, fused = name.removeprefix('gwae-').removesuffix('-fused'), name.endswith('-fused')
        m = GWAE((3, 64, 64), prior={'kind': prior}, fused_critic=fused)
    return m, build_optimizers(m)

def _time_model(name:str, runs:dict[int, int], warmup:int)->dict:
    "Run in a subprocess: per thread count, median seconds of the whole step, the main and the extra updates."
    import torch
    from gwae.core import seed_everything
    from gwae.models import extra_updates, main_update
    seed_everything(0)
    model, opts = _build(name)
    model.train()
    x = torch.rand(64, 3, 64, 64)
    res = {}
    for n, steps in runs.items():
        torch.set_num_threads(n)
        mains, extras = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            main_update(model, opts['main'], x)
            t1 = time.perf_counter()
            extra_updates(model, opts, x)
            t2 = time.perf_counter()
            if i >= warmup: mains.append(t1 - t0); extras.append(t2 - t1)
        totals = [a + b for a, b in zip(mains, extras)]
        res[n] = dict(step=statistics.median(totals), main=statistics.median(mains), critic=statistics.median(extras))
    res['rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return res

def _time_gw(runs:dict[int, int])->dict:
    "Seconds for the GW term alone (forward + backward) on a batch shaped like the model's, ours and the naive form."
    import torch
    from gwae.gw import GWDistortion
    gw = GWDistortion()
    z, x = torch.randn(64, 64, requires_grad=True), torch.rand(64, 3, 64, 64, requires_grad=True)
    def naive():
        B = len(z)
        s = z.std(0).mean().clamp(min=1e-8)
        dx = (x[:, None] - x[None]).view(B, B, -1).norm(dim=2)
        dz = ((z[:, None] - z[None]) * (gw.log_coef.exp() / s)).norm(dim=2)
        return (dz - dx).abs().mean()
    out = {}
    for n, steps in runs.items():
        torch.set_num_threads(n)
        for label, f in (('ours', lambda: gw(z, x)), ('naive', naive)):
            ts = []
            for i in range(steps + 1):
                t0 = time.perf_counter(); f().backward(); ts.append(time.perf_counter() - t0)
            out[f'{label}{n}'] = statistics.median(ts[1:])
    return out

def _table(results:dict, runs:dict[int, int], a, load0, load1, seconds:float)->str:
    import torch
    steps_text = ', '.join(f'{s} steps at {n} thread{"s" if n > 1 else ""}' for n, s in runs.items())
    lines = ['# Step time on CPU', '']
    if load0[0] > MAX_LOAD:
        lines += [f'**Unreliable: the 1-minute load average was {load0[0]:.2f} (> {MAX_LOAD}) before the run, so other '
                  'processes shared the cores. Rerun on a quiet machine.**', '']
    lines += [f'Machine: {_cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}; Python {platform.python_version()}.  ',
              f'Load average (1 min) before/after: {load0[0]:.2f} / {load1[0]:.2f}; run took {seconds:.0f} s; '
              f'medians of {steps_text}, after {a.warmup} warm-up steps; batch 64, 64×64×3, z_dim 64; random images.', '',
              '| model | threads | s/step | main | critic (5 steps) | vs VAE | vs official | peak RSS (GiB) |',
              '|---|---|---|---|---|---|---|---|']
    vae = results.get('vae')
    for name, r in results.items():
        if name == 'gw-term': continue
        for n in runs:
            t, off = r[str(n)], OFFICIAL.get(n)
            ratio = f"{t['step'] / vae[str(n)]['step']:.1f}×" if vae and name != 'vae' else ''
            if name == 'vae': versus = f"official VAE {off['vae']:.2f} s: {off['vae'] / t['step']:.2f}× its speed" if off else ''
            elif name.startswith('gwae-neural'): versus = f"official GWAE {off['gwae']:.2f} s: {off['gwae'] / t['step']:.2f}× its speed" if off else ''
            else: versus = 'no official figure (other prior)'
            crit = f"{t['critic']:.3f}" if name != 'vae' else ''
            lines.append(f"| {name} | {n} | {t['step']:.3f} | {t['main']:.3f} | {crit} | {ratio} | {versus} | {r['rss_gib']:.2f} |")
    gw = results.get('gw-term')
    if gw and 'gwae-neural' in results:
        lines += ['', '| GW term (forward + backward) | threads | seconds | share of a gwae-neural step |', '|---|---|---|---|']
        for n in runs:
            step = results['gwae-neural'][str(n)]['step']
            for label in ('ours', 'naive'):
                lines.append(f"| {'centred Gram (gwae.gw)' if label == 'ours' else 'naive B×B×P broadcast (official form)'} | {n} | "
                             f"{gw[f'{label}{n}']:.3f} | {gw[f'{label}{n}'] / step:.1%} |")
    lines += ['', 'Official reference (same machine kind, neural prior, main + 5 critic steps): 3.41 s/step at 1 thread, '
              '1.84-1.90 at 2 threads; VAE 0.44-0.46 (1 thread), 0.24-0.25 (2 threads).']
    return '\n'.join(lines) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=5, help='timed steps per model with 1 thread (median)')
    ap.add_argument('--steps-multi', type=int, default=3, help='timed steps per model with more threads (median)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--models', nargs='+', default=MODELS, choices=MODELS)
    ap.add_argument('--quick', action='store_true', help='1 warm-up and 1 timed step with 1 thread; writes nothing unless --out is given')
    ap.add_argument('--out', default=None, help='markdown output (default bench/results/step_time.md, none with --quick)')
    ap.add_argument('--_child', help=argparse.SUPPRESS)
    ap.add_argument('--_runs', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        runs = {int(n): s for n, s in json.loads(a._runs).items()}
        res = _time_gw(runs) if a._child == 'gw-term' else _time_model(a._child, runs, a.warmup)
        print(json.dumps(res))
        return
    if a.quick: a.steps, a.warmup, a.threads = 1, 1, [1]
    out = a.out or (None if a.quick else str(Path(__file__).parent / 'results' / 'step_time.md'))
    runs = {n: a.steps if n == 1 else a.steps_multi for n in a.threads}
    t_start, load0 = time.time(), os.getloadavg()
    print(f'load average (1 min) before the run: {load0[0]:.2f}'
          + (f' > {MAX_LOAD}: timings will be unreliable' if load0[0] > MAX_LOAD else ''), file=sys.stderr)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    results = {}
    for name in [*a.models, 'gw-term']:
        cmd = [sys.executable, __file__, '--_child', name, '--warmup', str(a.warmup), '--_runs', json.dumps(runs)]
        results[name] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f'{name}: done', file=sys.stderr)
    text = _table(results, runs, a, load0, os.getloadavg(), time.time() - t_start)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)

if __name__ == '__main__': main()
