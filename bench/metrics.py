"""Time every `gwae.metrics` metric on disentanglement_lib's workload and compare the fast DCI with the default.

Workload (dlib's unsupervised_study_v1): 10,000 train and 5,000 test codes, D = 10, dSprites factor sizes
(3, 6, 40, 32, 32, 10). The codes are synthetic with partial factor structure: six dimensions follow one factor each
(one of them also leaks a second factor), two are noise with a small leak, two are pure noise. BetaVAE and FactorVAE
use a ground-truth stand-in whose "images" are the factor classes and a deterministic representation with the same
structure, at the study's sample counts.

    python bench/metrics.py                 # everything, default GBT DCI on the full workload (minutes)
    python bench/metrics.py --gbt subsample # default GBT DCI on --gbt-points train points only
    python bench/metrics.py --gbt skip      # no default GBT DCI
    python bench/metrics.py --gbt reuse     # take the GBT DCI row from the previous results/metrics.json (no refit)

Writes bench/results/metrics.md and bench/results/metrics.json.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ.setdefault(var, '1')
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
    p.add_argument('--n-jobs', type=int, default=2, help="processes for DCI (the machine has 2 cores)")
    p.add_argument('--out', default=str(Path(__file__).parent / 'results'))
    a = p.parse_args()

    out = Path(a.out)
    previous = json.loads((out / 'metrics.json').read_text())['results'].get('dci comparison') if a.gbt == 'reuse' else None
    if a.gbt == 'reuse' and (previous is None or previous['train_points'] != 10000):
        sys.exit(f"--gbt reuse needs a full-workload GBT result in {out / 'metrics.json'}; run --gbt full once")
    from joblib import Parallel, delayed
    Parallel(n_jobs=a.n_jobs)(delayed(abs)(i) for i in range(a.n_jobs))  # start the worker processes before timing
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
    fast1, t_fast1 = record('dci fast (n_jobs=1)', M.dci, x, f, xt, ft, 'fast', n_jobs=1)
    fast, t_fast = record(f'dci fast (n_jobs={a.n_jobs})', M.dci, x, f, xt, ft, 'fast', n_jobs=a.n_jobs)
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
        gbt, t_gbt = previous['gbt'], previous['gbt_seconds']
        rows.append((f'dci gbt, 10000 train (n_jobs={previous.get("n_jobs", a.n_jobs)}; earlier run, not refit)', t_gbt, gbt))
        comparison = dict(previous, fast_seconds=t_fast, fast_seconds_1job=t_fast1, diffs={k: fast[k] - gbt[k] for k in gbt}, fast=fast, reused=True)
        results['dci comparison'] = comparison
    elif a.gbt != 'skip':
        n = 10000 if a.gbt == 'full' else a.gbt_points
        gbt, t_gbt = record(f'dci gbt, {n} train (n_jobs={a.n_jobs})', M.dci, x[:n], f[:n], xt, ft, 'gbt', n_jobs=a.n_jobs)
        if n == 10000: ref = fast
        else: ref, _ = timed(M.dci, x[:n], f[:n], xt, ft, 'fast', n_jobs=a.n_jobs)
        comparison = dict(train_points=n, gbt_seconds=t_gbt, fast_seconds=t_fast if n == 10000 else None, fast_seconds_1job=t_fast1 if n == 10000 else None,
                          n_jobs=a.n_jobs, diffs={k: ref[k] - gbt[k] for k in gbt}, gbt=gbt, fast=ref)
        results['dci comparison'] = comparison

    env = dict(python=platform.python_version(), numpy=np.__version__, sklearn=sklearn.__version__, torch=torch.__version__,
               cpus=os.cpu_count(), gbt_mode=a.gbt, n_jobs=a.n_jobs, loadavg_before=load_before, loadavg_after=os.getloadavg())
    out.mkdir(parents=True, exist_ok=True)
    (out / 'metrics.json').write_text(json.dumps(dict(env=env, results=results), indent=1, default=float))
    lines = ["# gwae.metrics timings on disentanglement_lib's workload", "",
             f"10,000 train / 5,000 test synthetic codes, D = {D}, factor sizes {FACTOR_SIZES}; {env['cpus']} CPU cores, "
             f"one BLAS/OpenMP thread per process, DCI over {a.n_jobs} processes. Python {env['python']}, numpy {env['numpy']}, "
             f"scikit-learn {env['sklearn']}, torch {env['torch']}. Generated by `python bench/metrics.py --gbt {a.gbt}`. "
             f"1-minute load average {load_before[0]:.1f} before and {env['loadavg_after'][0]:.1f} after (the machine is shared, "
             "so timings above a load of 2 are inflated).", "",
             "| metric | seconds | scores |", "|---|---:|---|"]
    lines += [f"| {name} | {sec:.2f} | {', '.join(f'{k}={float(v):.4f}' for k, v in o.items())} |" for name, sec, o in rows]
    lines += ["", f"Whole `metric_suite` with the fast DCI (n_jobs={a.n_jobs}): **{t_suite:.1f} s**.", ""]
    if comparison:
        c = comparison
        lines += ["## Fast DCI against the default (GBT)", "",
                  f"On {c['train_points']} train points, both over {c.get('n_jobs', a.n_jobs)} processes: GBT {c['gbt_seconds']:.1f} s"
                  + (" (from the earlier `--gbt full` run; the default DCI is not refit)" if c.get('reused') else '')
                  + (f", fast {c['fast_seconds']:.1f} s: **{c['gbt_seconds'] / c['fast_seconds']:.1f}x faster**; fast on one process "
                     f"{c['fast_seconds_1job']:.1f} s: **{c['gbt_seconds'] / c['fast_seconds_1job']:.1f}x faster** than GBT on two "
                     "(on a loaded machine the second process does not help the fast DCI, whose time is dominated by the "
                     "40- and 32-valued factors)" if c['fast_seconds'] else '') + ".", "",
                  "| key | gbt | fast | fast - gbt |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {c['gbt'][k]:.4f} | {c['fast'][k]:.4f} | {c['diffs'][k]:+.4f} |" for k in c['gbt']]
    else: lines += ["The default GBT DCI was skipped (`--gbt skip`)."]
    (out / 'metrics.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))

if __name__ == '__main__': main()
