"""Throughput of the generated datasets and of the DataLoader path (one thread, batch 64), public API only.

Run from the repository root: `OMP_NUM_THREADS=1 python bench/data.py`; writes `bench/results/data.md`.
The reference is a GWAE training step timed in the same run (batch 64 of 64x64x3, z_dim 64, neural prior, one main
and 5 critic updates, 2 threads: the fastest step on a 2-core machine); a batch must come in under a tenth of it to
stay out of the way: the rule is a headroom (step time / time per batch) of at least 10x.
Every number is the median of several repeats; the 1-minute load average is recorded, and the table is flagged when
it is above 1.2 (other processes were competing for the cores, so the times are inflated and noisy).
"""
import os, platform, time
from pathlib import Path

import numpy as np
import torch

from gwae.dsprites import DSprites
from gwae.shapes3d import Shapes3D
from gwae.data import get_dls, split_idxs

BS, STEP_THREADS, RULE = 64, 2, 10  # batch size; threads of the reference GWAE step; required headroom
BUSY = 1.2  # 1-minute load average above which timings are flagged

def median_time(fn, reps:int, setup=None)->float:
    "Median seconds of `reps` calls of `fn(setup())` (`setup` untimed), after one untimed warm-up call."
    setup = setup or (lambda: None)
    fn(setup()); ts = []
    for _ in range(reps):
        arg = setup()
        t = time.perf_counter(); fn(arg); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

def gwae_step_seconds(reps:int=3)->float:
    "Median seconds of one GWAE training step (the reference) on `STEP_THREADS` threads; leaves torch on one thread."
    from gwae.core import seed_everything
    from gwae.gwae import GWAE
    from gwae.models import build_optimizers, train_step
    torch.set_num_threads(STEP_THREADS)
    seed_everything(0)
    model = GWAE((3, 64, 64), z_dim=64, prior={'kind': 'neural'}).train()
    opts, x = build_optimizers(model), torch.rand(BS, 3, 64, 64)
    try: return median_time(lambda _: train_step(model, opts, x), reps)
    finally: torch.set_num_threads(1)

def random_batch(ds, seed:int):
    "A function rendering a fresh random batch of `ds` on each call."
    rng = np.random.default_rng(seed)
    return lambda _: ds.images_from_factors(ds.sample_factors(BS, rng))

def loader_batch(ds, size, channels, reps:int)->float:
    "Median seconds per training batch of `get_dls`, batches timed one by one."
    it = iter(get_dls(ds, bs=BS, splits=split_idxs(len(ds), (0.8, 0.1, 0.1)), size=size, channels=channels, seed=0).train)
    return median_time(lambda _: next(it), reps)

def main():
    load0 = os.getloadavg()[0]
    step_s = gwae_step_seconds()
    print(f"reference GWAE step ({STEP_THREADS} threads): {step_s:.2f} s")
    rows, one_off = [], []
    def add(name, s, note=''):
        rows.append((name, s, step_s / s, note)); print(f"{name:<58} {s*1e3:8.1f} ms  headroom {step_s/s:6.0f}x")

    add('DSprites.images_from_factors (random batch)', median_time(random_batch(DSprites(), 0), 20))
    seeds = iter(range(1000))
    add('Shapes3D cold: first batch of a fresh `Shapes3D()`',
        median_time(lambda ds: ds.images_from_factors(ds.sample_factors(BS, next(seeds))), 5, setup=Shapes3D),
        'never seen in training: `gwae train` calls `prefill()` first')
    prefill = median_time(lambda ds: ds.prefill(), 3, setup=Shapes3D)
    one_off.append(('`Shapes3D().prefill()` (all 480 weight maps, 31 MB)', prefill))
    print(f"Shapes3D().prefill() {prefill:.2f} s")
    s3 = Shapes3D().prefill()
    add('Shapes3D warm: after `prefill()`', median_time(random_batch(s3, 1), 50))
    add('DataLoader DSprites -> 32 px, 3 channels', loader_batch(DSprites(), 32, 3, 20))
    add('DataLoader Shapes3D (prefilled) -> 64 px RGB', loader_batch(s3, None, None, 50))
    add('DataLoader Shapes3D (prefilled) -> 28 px grey', loader_batch(s3, 28, 1, 50))
    load1 = os.getloadavg()[0]
    busy = max(load0, load1) > BUSY
    print(f"load average (1 min): {load0:.2f} before, {load1:.2f} after" + ("  ** BUSY: timings inflated **" if busy else ''))

    lines = [
        '# Data generation throughput', '',
        *([f'> **Flagged: the machine was busy** (1-minute load average {load0:.2f} before, {load1:.2f} after, above '
           f'{BUSY}). Other processes competed for the cores, so these times are inflated and noisy; rerun on a quiet '
           'machine before quoting them.', ''] if busy else []),
        f'`python bench/data.py`, one thread (`torch.set_num_threads(1)`), batch {BS}, each time the median of several '
        f'repeats; {platform.processor() or platform.machine()}, torch {torch.__version__}; 1-minute load average '
        f'{load0:.2f} before and {load1:.2f} after the run.', '',
        f'**Rule:** headroom = {step_s:.2f} s (a GWAE training step timed in this run: batch {BS} of 64×64×3, z_dim 64, '
        f'neural prior, one main and 5 critic updates, {STEP_THREADS} threads) divided by the time per batch must be '
        f'≥ {RULE}×, so that data never costs more than a tenth of a step.', '',
        '| path | ms / batch | images / s | headroom | passes ≥ 10× |', '|---|---|---|---|---|',
        *[f'| {n} | {s*1e3:.1f} | {BS/s:,.0f} | {h:,.0f}× | {"yes" if h >= RULE else "**no**"}{f" ({note})" if note else ""} |'
          for n, s, h, note in rows], '',
        *[f'One-off cost, once per process: {n} takes {s:.2f} s (median of 3).' for n, s in one_off], '',
        '"Cold" is a fresh `Shapes3D` asked for 64 random combinations: it ray-casts the camera passes of their '
        'orientations and their (orientation, shape, scale) weight maps, then caches them. Without `prefill()` the first '
        'batches of a run pay this; once the 480 combinations are cached every batch is a gather and a 4-term colour '
        'mix. `prefill()` pays it all at start instead, so that every batch meets the rule.', '',
        'The DataLoader rows include the render of the rows above plus resizing and channel conversion; a DataLoader '
        'time below the bare render it includes is measurement noise, which the load average above helps to judge.',
    ]
    out = Path(__file__).parent / 'results' / 'data.md'
    out.write_text('\n'.join(lines) + '\n'); print(f'wrote {out}')

if __name__ == '__main__': main()
