"""Seconds per GWAE training step on CPU, against the official algorithm restated and timed in the same run.

The reference is `gwae.test_utils.official_gwae_step`: the official `step_batch` (`ganmodokix/gwae`,
`models/gwae.py`) restated with its call order and all of its work (naive B×B×P distances, the critic step's unused
decode, the batch encoded once for the five critic updates). It is timed in the same process as gwae's own step
(`gwae.models.train_step`: one main update, then the critic's updates), the two alternating step by step on two copies
of the same model, so that both see the same machine load; the table reports their ratio. Batch 64 of 64×64×3 random
images, z_dim 64, neural prior, official settings; each variant (gwae's exact default and its options) runs in its
own subprocess per thread count. Medians of `--steps` timed steps after `--warmup` untimed ones. The 1-minute load
average is read before the run; above 1.2 the table is flagged. Prints a markdown table and writes it to
`bench/results/step_time.md` (not in `--quick` mode).

The official step's naive distances allocate a 64×64×12288 float tensor (200 MB) per call; glibc's malloc returns
blocks that large to the system and page-faults them in again on the next call, a large share of the official time
on some machines. The last variant therefore runs both steps with `MALLOC_MMAP_THRESHOLD_` raised (freed blocks stay
in the process): the ratio without that cost, for reading the default rows fairly.

    python bench/step_time.py            # about 5 minutes on a quiet 2-core machine
    python bench/step_time.py --quick    # one warm-up and one timed step, 1 thread, nothing written
"""
from __future__ import annotations
import argparse, json, os, platform, statistics, subprocess, sys, time
from pathlib import Path

from machine import cpu_model, load_average

VARIANTS = {  # name -> (GWAEConfig changes of gwae's step, environment of both steps); the first is the exact default
    'gwae (exact, default)': ({}, {}),
    'gwae, fused critic (approximate)': (dict(fused_critic=True), {}),
    'gwae (exact), both with malloc keeping freed blocks': ({}, {'MALLOC_MMAP_THRESHOLD_': str(2**40)}),
}
MAX_LOAD = 1.2

def _time_variant(name:str, threads:int, steps:int, warmup:int)->dict:
    "In a subprocess: median seconds of the official step and of gwae's step (with its main/critic split), interleaved."
    import torch
    from gwae.core import seed_everything
    from gwae.gwae import GWAE
    from gwae.models import build_optimizers, extra_updates, main_update
    from gwae.test_utils import official_gwae_step
    torch.set_num_threads(threads)
    def fresh():
        seed_everything(0)
        return GWAE((3, 64, 64), z_dim=64, prior={'kind': 'neural'}, **VARIANTS[name][0]).train()
    official, ours = fresh(), fresh()
    opts, x = build_optimizers(ours), torch.rand(64, 3, 64, 64)
    t_official, t_main, t_critic = [], [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter(); official_gwae_step(official, x)
        t1 = time.perf_counter(); main_update(ours, opts['main'], x)
        t2 = time.perf_counter(); extra_updates(ours, opts, x)
        t3 = time.perf_counter()
        if i >= warmup: t_official.append(t1 - t0); t_main.append(t2 - t1); t_critic.append(t3 - t2)
    med = statistics.median
    return dict(official=med(t_official), main=med(t_main), critic=med(t_critic),
                ours=med([a + b for a, b in zip(t_main, t_critic)]))

def _table(rows:list, a, load0, load1, seconds:float)->str:
    import torch
    lines = ['# GWAE step time on CPU, against the official step timed in the same run', '']
    if load0 > MAX_LOAD:
        lines += [f'**Unreliable: the 1-minute load average was {load0:.2f} (> {MAX_LOAD}) before the run, so other '
                  'processes shared the cores. Rerun on a quiet machine.**', '']
    lines += [f'Machine: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}; Python '
              f'{platform.python_version()}.  ',
              f'Load average (1 min) before/after: {load0:.2f} / {load1:.2f}; run took {seconds:.0f} s; medians of '
              f'{a.steps} steps after {a.warmup} warm-up steps; batch 64, 64×64×3, z_dim 64, neural prior, '
              'one main update + 5 critic updates.', '',
              '| gwae step | threads | official s/step | gwae s/step | main | critic (5 updates) | speed-up |',
              '|---|---|---|---|---|---|---|']
    for name, n, r in rows:
        lines.append(f"| {name} | {n} | {r['official']:.3f} | {r['ours']:.3f} | {r['main']:.3f} | {r['critic']:.3f} | "
                     f"**{r['official'] / r['ours']:.2f}×** |")
    return '\n'.join(lines) + '\n'

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=11, help='timed steps (median; fewer swing by 10 %% between runs)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument('--quick', action='store_true', help='1 warm-up and 1 timed step, 1 thread; writes nothing')
    ap.add_argument('--out', default=None, help='markdown output (default bench/results/step_time.md)')
    ap.add_argument('--_child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        name, n = json.loads(a._child)
        print(json.dumps(_time_variant(name, n, a.steps, a.warmup)))
        return
    if a.quick: a.steps, a.warmup, a.threads, a.variants = 1, 1, [1], a.variants[:1]
    out = a.out or (None if a.quick else str(Path(__file__).parent / 'results' / 'step_time.md'))
    t_start, load0 = time.time(), load_average()
    print(f'load average (1 min) before the run: {load0:.2f}', file=sys.stderr)
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    rows = []
    for n in a.threads:
        for name in a.variants:
            cmd = [sys.executable, __file__, '--_child', json.dumps([name, n]), '--steps', str(a.steps), '--warmup', str(a.warmup)]
            r = subprocess.run(cmd, env={**env, **VARIANTS[name][1]}, check=True, capture_output=True, text=True)
            rows.append((name, n, json.loads(r.stdout.splitlines()[-1])))
            print(f'{name}, {n} thread(s): done', file=sys.stderr)
    text = _table(rows, a, load0, load_average(), time.time() - t_start)
    print(text)
    if out: Path(out).parent.mkdir(parents=True, exist_ok=True); Path(out).write_text(text)

if __name__ == '__main__': main()
