"""Throughput of the generated datasets and of the DataLoader path (one thread, batch 64).

Run from the repository root: `OMP_NUM_THREADS=1 python bench/data.py`; writes `bench/results/data.md`.
A GWAE training step on a 64-image 64x64x3 batch takes 1.5-3.4 s on the reference 2-core CPU, so generation must
deliver a batch in well under 0.15 s to stay out of the way (10x headroom).
"""
import platform, time
from pathlib import Path

import numpy as np
import torch

from gwae.data import DSprites, Shapes3D, get_dls, split_idxs

BS, STEP_S = 64, 1.5  # batch size; the fastest GWAE step quoted above

def timed(fn, reps):
    "Median seconds of `reps` calls after one warm-up call."
    fn(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

def random_batches(ds, seed):
    rng = np.random.default_rng(seed)
    return lambda: ds.images_from_factors(ds.sample_factors(BS, rng))

def cold_shapes3d(reps=5):
    "Every batch in a fresh dataset: no weight map cached, each image ray-cast (the 15 camera passes are cached)."
    ts = []
    for r in range(reps):
        ds = Shapes3D()
        for o in range(15): ds._pass(o)
        f = ds.sample_factors(BS, np.random.default_rng(r))
        t = time.perf_counter(); ds.images_from_factors(f); ts.append(time.perf_counter() - t)
    return float(np.median(ts))

def full_cache_shapes3d():
    ds = Shapes3D(); f = np.stack(np.meshgrid(*[range(n) for n in (1, 1, 1, 8, 4, 15)], indexing='ij'), -1).reshape(-1, 6)
    t = time.perf_counter(); ds.layer_weights(f); return time.perf_counter() - t

def loader_epoch_batches(ds, size, channels, nb=10):
    dls = get_dls(ds, bs=BS, splits=split_idxs(len(ds), (0.8, 0.1, 0.1)), size=size, channels=channels, seed=0)
    it = iter(dls.train); next(it)  # warm-up
    t = time.perf_counter()
    for _ in range(nb): next(it)
    return (time.perf_counter() - t) / nb

def main():
    torch.set_num_threads(1)
    rows = []
    def add(name, s): rows.append((name, s, BS / s, STEP_S / s)); print(f"{name:<58} {s*1e3:8.1f} ms {BS/s:9.0f} img/s")
    ds = DSprites()
    add('DSprites.images_from_factors (random batch)', timed(random_batches(ds, 0), 20))
    add('Shapes3D cold: ray-cast 64 combinations never seen', cold_shapes3d())
    s3 = Shapes3D(); s3.layer_weights(s3.sample_factors(20_000, np.random.default_rng(0)))  # warm every combination
    add('Shapes3D warm: all 480 weight maps cached', timed(random_batches(s3, 1), 50))
    add('DataLoader DSprites -> 32 px, 3 channels', loader_epoch_batches(DSprites(), 32, 3))
    add('DataLoader Shapes3D (warm) -> 64 px RGB', loader_epoch_batches(s3, None, None))
    add('DataLoader Shapes3D (warm) -> 28 px grey', loader_epoch_batches(s3, 28, 1))
    full = full_cache_shapes3d(); print(f"Shapes3D: rendering all 480 weight maps takes {full:.1f} s")
    lines = [
        '# Data generation throughput', '',
        f'`python bench/data.py`, one thread (`torch.set_num_threads(1)`), batch {BS}, median over repeats; '
        f'{platform.processor() or platform.machine()}, torch {torch.__version__}. Headroom = {STEP_S} s (a fast GWAE step '
        'on batch 64, 64×64×3, 2 threads; 3.4 s on one) divided by the time per batch: it should be ≥ 10.', '',
        '| path | ms / batch | images / s | headroom vs a GWAE step |', '|---|---|---|---|',
        *[f'| {n} | {s*1e3:.1f} | {r:,.0f} | {h:,.0f}× |' for n, s, r, h in rows], '',
        f'Filling the whole 3D Shapes cache from nothing (15 camera passes, then 480 (orientation, shape, scale) weight '
        f'maps, 31 MB) takes {full:.1f} s once per process; after that a batch is a gather and a 4-term colour mix. '
        '"Cold" is the worst case of a batch: 64 random combinations with no weight map cached yet.',
        '', 'Timings are wall-clock on a shared machine; other processes running at the same time inflate them.',
    ]
    out = Path(__file__).parent / 'results' / 'data.md'
    out.write_text('\n'.join(lines) + '\n'); print(f'wrote {out}')

if __name__ == '__main__': main()
