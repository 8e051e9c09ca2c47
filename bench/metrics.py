"""Time every `gwae.metrics` metric on disentanglement_lib's workload and compare the fast DCI with the default.

Workload (dlib's unsupervised_study_v1): 10,000 train and 5,000 test codes, D = 10, dSprites factor sizes
(3, 6, 40, 32, 32, 10). The codes are synthetic with partial factor structure: six dimensions follow one factor each
(one of them also leaks a second factor), two are noise with a small leak, two are pure noise. BetaVAE and FactorVAE
use a ground-truth stand-in whose "images" are the factor classes and a deterministic representation with the same
structure, at the study's sample counts.

The fast DCI runs with three seeds and the default (sklearn's gradient boosting) with --gbt-seeds seeds, so the table
shows how far the two estimators are apart next to how far each moves with its seed (both break ties at random).

    python bench/metrics.py                  # everything, default GBT DCI on the full workload (minutes per seed)
    python bench/metrics.py --gbt-seeds 2    # ... with two GBT seeds, to show its own seed-to-seed change
    python bench/metrics.py --gbt subsample  # default GBT DCI on --gbt-points train points only
    python bench/metrics.py --gbt skip       # no default GBT DCI
    python bench/metrics.py --gbt reuse      # take the GBT DCI rows from the previous results/metrics.json (no refit)

Writes bench/results/metrics.md and bench/results/metrics.json.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ.setdefault(var, '1')
import numba
import numpy as np
import sklearn
import torch

from gwae import metrics as M

FACTOR_SIZES = (3, 6, 40, 32, 32, 10)
D = 10

def code_map(factors:np.ndarray, noise:np.ndarray)->np.ndarray:
    "Partial factor structure: factor k -> dim k (dim 1 also leaks factor 2), dims 6-7 leak factors 4/5 into noise."
    u = (factors + 0.5) / np.array(FACTOR_SIZES)
    z = np.zeros((len(factors), D))
    z[:, :6] = u + 0.05 * noise[:, :6]
    z[:, 1] += 0.5 * u[:, 2]
    z[:, 6:] = noise[:, 6:]
    z[:, 6] += 0.3 * u[:, 4]
    z[:, 7] += 0.3 * u[:, 5]
    return z

def synthetic_split(n:int, rng:np.random.RandomState):
    f = np.stack([rng.randint(s, size=n) for s in FACTOR_SIZES], 1)
    return code_map(f, rng.randn(n, D)), f

class FactorImages:
    "Ground-truth stand-in: the image of a factor vector is the vector itself, shaped (N, K, 1, 1)."
    factor_sizes = FACTOR_SIZES
    def sample_factors(self, n, rng): return np.stack([rng.randint(s, size=n) for s in self.factor_sizes], 1)
    def images_from_factors(self, classes): return torch.as_tensor(np.asarray(classes), dtype=torch.float32)[:, :, None, None]

def represent(images:torch.Tensor)->np.ndarray:
    "Deterministic codes with the same partial structure; the 'noise' is a fixed function of the factors."
    f = images.flatten(1).numpy().astype(np.int64)
    phase = f @ np.arange(1, len(FACTOR_SIZES) + 1)
    noise = np.sin(phase[:, None] * (np.arange(D) + 1.3))
    return code_map(f, noise)

def timed(fn, *args, **kwargs):
    t = time.perf_counter(); out = fn(*args, **kwargs)
    return out, time.perf_counter() - t

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--gbt', choices=['full', 'subsample', 'skip', 'reuse'], default='full', help="how to run the default (GBT) DCI")
    p.add_argument('--gbt-points', type=int, default=2000, help="train points for --gbt subsample")
    p.add_argument('--gbt-seeds', type=int, default=1, help="seeds of the default DCI (each takes minutes on the full workload)")
    p.add_argument('--n-jobs', type=int, default=2, help="processes for DCI (the machine has 2 cores)")
    p.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    a = p.parse_args()

    out = Path(a.out)
    previous = json.loads((out / 'metrics.json').read_text())['results'].get('dci comparison') if a.gbt == 'reuse' else None
    if a.gbt == 'reuse' and (previous is None or previous['train_points'] != 10000 or 'gbt_runs' not in previous):
        sys.exit(f"--gbt reuse needs a full-workload GBT result in {out / 'metrics.json'}; run --gbt full once")
    from joblib import Parallel, delayed
    Parallel(n_jobs=a.n_jobs)(delayed(abs)(i) for i in range(a.n_jobs))  # start the worker processes before timing
    M.dci(*synthetic_split(300, np.random.RandomState(1)), estimator='fast', n_jobs=a.n_jobs)  # load the compiled kernel in them
    load_before = os.getloadavg()
    rng = np.random.RandomState(0)
    x, f = synthetic_split(10000, rng)
    xt, ft = synthetic_split(5000, rng)
    logvar = np.log(np.full_like(x, 0.05 ** 2))
    rows, results = [], {}
    def record(name, fn, *args, **kwargs):
        out, sec = timed(fn, *args, **kwargs)
        results[name] = dict(seconds=sec, scores={k: float(v) for k, v in out.items()})
        rows.append((name, sec, out))
        print(f"{name:<34s} {sec:8.2f} s  {out}", flush=True)
        return out, sec

    record('mig (histogram)', M.mig, x, f)
    record('mig (sampling, 10k samples)', M.mig, x, f, 'sampling', logvar=logvar)
    _, t_fast1 = record('dci fast (n_jobs=1)', M.dci, x, f, xt, ft, 'fast', n_jobs=1)
    fast_runs = [record(f'dci fast (n_jobs={a.n_jobs}, seed {s})', M.dci, x, f, xt, ft, 'fast', n_jobs=a.n_jobs, seed=s) for s in range(3)]
    record(f'dci gwae (n_jobs={a.n_jobs})', M.dci, x, f, xt, ft, 'gwae', n_jobs=a.n_jobs)
    record('sap (discrete)', M.sap, x, f, xt, ft)
    record('sap (continuous)', M.sap, x, f, xt, ft, continuous_factors=True)
    record('modularity_explicitness', M.modularity_explicitness, x, f, xt, ft)
    record('irs', M.irs, x, f)
    record('unsupervised_scores', M.unsupervised_scores, x)
    record('beta_vae_score (10k/5k, batch 64)', M.beta_vae_score, FactorImages(), represent)
    record('factor_vae_score (10k/5k/10k, batch 64)', M.factor_vae_score, FactorImages(), represent)
    _, t_suite = timed(M.metric_suite, x, f, xt, ft, 'fast', n_jobs=a.n_jobs)
    results['metric_suite (fast DCI)'] = dict(seconds=t_suite)
    print(f"metric_suite with fast DCI: {t_suite:.1f} s", flush=True)

    comparison = None
    if a.gbt == 'reuse':
        gbt_runs = previous['gbt_runs']
        for run in gbt_runs: rows.append((f"dci gbt (n_jobs={previous['n_jobs']}, seed {run['seed']}; earlier run, not refit)", run['seconds'], run['scores']))
    elif a.gbt != 'skip':
        n = 10000 if a.gbt == 'full' else a.gbt_points
        gbt_runs = [dict(seed=s, seconds=t, scores=o) for s in range(a.gbt_seeds)
                    for o, t in [record(f'dci gbt, {n} train (n_jobs={a.n_jobs}, seed {s})', M.dci, x[:n], f[:n], xt, ft, 'gbt', n_jobs=a.n_jobs, seed=s)]]
        if n != 10000: fast_runs = [timed(M.dci, x[:n], f[:n], xt, ft, 'fast', n_jobs=a.n_jobs, seed=s) for s in range(3)]
    if a.gbt != 'skip':
        n = 10000 if a.gbt == 'reuse' else n
        gbt, t_gbt = gbt_runs[0]['scores'], gbt_runs[0]['seconds']
        fast, t_fast = fast_runs[0]
        comparison = dict(train_points=n, n_jobs=previous['n_jobs'] if previous else a.n_jobs, gbt_runs=gbt_runs, gbt_seconds=t_gbt,
                          fast_seconds=t_fast, fast_seconds_1job=t_fast1 if n == 10000 else None, reused=a.gbt == 'reuse',
                          fast_runs=[o for o, _ in fast_runs], diffs={k: fast[k] - gbt[k] for k in gbt},
                          fast_seed_spread={k: float(np.ptp([o[k] for o, _ in fast_runs])) for k in gbt},
                          fast_max_abs_diff={k: max(abs(o[k] - gbt[k]) for o, _ in fast_runs) for k in gbt},
                          gbt_seed_spread={k: float(np.ptp([r['scores'][k] for r in gbt_runs])) for k in gbt} if len(gbt_runs) > 1 else None)
        results['dci comparison'] = comparison

    env = dict(python=platform.python_version(), numpy=np.__version__, sklearn=sklearn.__version__, numba=numba.__version__, torch=torch.__version__,
               cpus=os.cpu_count(), gbt_mode=a.gbt, n_jobs=a.n_jobs, loadavg_before=load_before, loadavg_after=os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    (out / 'metrics.json').write_text(json.dumps(dict(env=env, results=results), indent=1, default=float))
    lines = ["# gwae.metrics timings on disentanglement_lib's workload", "",
             f"10,000 train / 5,000 test synthetic codes, D = {D}, factor sizes {FACTOR_SIZES}; {env['cpus']} CPU cores, "
             f"one BLAS/OpenMP thread per process, DCI over {a.n_jobs} processes. Python {env['python']}, numpy {env['numpy']}, "
             f"scikit-learn {env['sklearn']}, numba {env['numba']}, torch {env['torch']}. Generated by "
             f"`python bench/metrics.py --gbt {a.gbt}" + (f" --gbt-seeds {a.gbt_seeds}" if a.gbt_seeds != 1 else '') + "`. "
             f"1-minute load average {load_before[0]:.1f} before and {env['loadavg_after'][0]:.1f} after (the machine is shared, "
             "so timings above a load of 2 are inflated).", "",
             "| metric | seconds | scores |", "|---|---:|---|"]
    lines += [f"| {name} | {sec:.2f} | {', '.join(f'{k}={float(v):.4f}' for k, v in o.items())} |" for name, sec, o in rows]
    lines += ["", f"Whole `metric_suite` with the fast DCI (n_jobs={a.n_jobs}): **{t_suite:.1f} s**.", ""]
    if comparison:
        c = comparison
        lines += ["## Fast DCI against the default (GBT)", "",
                  f"On {c['train_points']} train points, both over {c['n_jobs']} processes (factors with the most classes first): "
                  f"GBT {c['gbt_seconds']:.1f} s" + (" (from an earlier `--gbt full` run, not refit)" if c['reused'] else '')
                  + f", fast {c['fast_seconds']:.1f} s: **{c['gbt_seconds'] / c['fast_seconds']:.1f}x faster**"
                  + (f"; fast on one process {c['fast_seconds_1job']:.1f} s ({c['gbt_seconds'] / c['fast_seconds_1job']:.1f}x)" if c['fast_seconds_1job'] else '')
                  + ".", "",
                  "| key | gbt (seed 0) | fast (seed 0) | fast - gbt | max abs(fast - gbt), fast seeds 0-2 | fast seed spread | gbt seed spread |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        spread = lambda d, k: f"{d[k]:.5f}" if d else 'n/a'
        lines += [f"| {k} | {c['gbt_runs'][0]['scores'][k]:.5f} | {c['fast_runs'][0][k]:.5f} | {c['diffs'][k]:+.5f} | {c['fast_max_abs_diff'][k]:.5f} "
                  f"| {spread(c['fast_seed_spread'], k)} | {spread(c['gbt_seed_spread'], k)} |" for k in c['diffs']]
    else: lines += ["The default GBT DCI was skipped (`--gbt skip`)."]
    (out / 'metrics.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
