"""Quality per CPU-minute: GWAE (quickstart and official presets), VAE and β-VAE for equal wall-clock budgets.

The VAE and β-VAE use disentanglement_lib's Bernoulli reconstruction term; `vae_gaussian` is the VAE with the
Gaussian term ½‖x − x̂‖² (vaetc's, and the term of GWAE's own objective on 3D Shapes).

For each dataset (generated 3D Shapes and generated dSprites, 32 px), model and seed, one training run as long as the
largest budget, on one CPU thread (`gwae_quickstart` is each dataset's quickstart config: configs/quickstart.yaml on
3D Shapes, configs/quickstart_dsprites.yaml on dSprites); its weights are saved whenever the training clock (wall time
of the training batches, validation excluded) passes a budget. Each snapshot is then evaluated like a run folder
(`gwae.runs.evaluate_model`, `disentanglement`, `generation_fid`): validation PSNR, MIG and DCI at
`evaluation.scale`, and the Fréchet distance of 512 prior samples to 512 validation images in the features of the
dataset's cached feature net (`gwae.evaluation.ground_truth_features`, the same net for every model). Runs are
independent subprocesses (`--jobs` at a time, 1 thread each) and are skipped when their results exist, so a stopped
benchmark continues where it was. The load average is recorded: budgets are wall-clock, so a busy machine gives
every model fewer steps, which is why the runs of one invocation are interleaved, each model under the same load. A
run whose spec is unchanged keeps its committed result unless `--fresh` names its model; the header says when and on
which processor each model's results were computed, so results kept from another machine are never mistaken for
side-by-side ones.

Writes bench/results/learning.md (mean ± std over seeds per dataset, budget and model), learning.json (every
snapshot) and learning.png (each metric against minutes); runs go to bench/runs/learning/ (not committed).

    python bench/learning.py                                   # budgets 1 2 5 10 min, 3 seeds: about 6 h on 2 cores
    python bench/learning.py --budgets 1 2 4 --seeds 0 1 2     # shorter
    python bench/learning.py --budgets 1 2 4 --fresh vae       # rerun the VAE, keep the others' committed results
    python bench/learning.py --quick                           # 10 s budgets, one seed, 3D Shapes; nothing written
"""
from __future__ import annotations
import argparse, itertools, json, os, statistics, subprocess, sys, time
from pathlib import Path

from machine import cpu_model, load_average

ROOT = Path(__file__).resolve().parents[1]
DATA = {  # the datasets, as run-config data sections (generated: nothing to download)
    'shapes3d': dict(name='shapes3d', size=32, n_train=10000, n_valid=512, in_memory=True),
    'dsprites': dict(name='dsprites', size=32, n_train=10000, n_valid=512, in_memory=True),
}
METRICS = ['psnr', 'mig.discrete_mig', 'dci_fast.disentanglement', 'fid']
EVALUATION = dict(metrics=['mig', 'dci_fast'], scale=0.05, fid_samples=512)

QUICKSTART = {'shapes3d': 'configs/quickstart.yaml', 'dsprites': 'configs/quickstart_dsprites.yaml'}

def quickstart(data:str)->dict:
    "The README's quickstart config of a dataset (the main job on 3D Shapes, its twin on dSprites)."
    import yaml
    return yaml.safe_load((ROOT/QUICKSTART[data]).read_text())

def batch_size(name:str, data:str)->int:
    "Training batch of a compared model: the quickstart's own, 64 (the official batch) for the others."
    return quickstart(data)['train']['batch_size'] if name == 'gwae_quickstart' else 64

def model_presets(data:str)->dict:
    "Each compared model on `data` as a run-config model section."
    return {
        'gwae_quickstart': quickstart(data)['model'],
        'gwae_official': dict(name='gwae', z_dim=10, prior=dict(kind='factorized_neural')),
        'vae': dict(name='vae', z_dim=10, likelihood='bernoulli', optimizer=dict(name='adam', lr=1e-4)),
        'vae_gaussian': dict(name='vae', z_dim=10, likelihood='gaussian', optimizer=dict(name='adam', lr=1e-4)),
        'beta_vae': dict(name='beta_vae', z_dim=10, likelihood='bernoulli', beta=4.0,
                         optimizer=dict(name='adam', lr=1e-4)),
    }
MODELS = list(model_presets('shapes3d'))

# ---------------------------------------------------------------- one run (in its own subprocess)

def run_one(spec:dict)->dict:
    "Train one model for the largest budget, snapshot at each budget, evaluate every snapshot."
    import torch
    from fastai.callback.core import Callback, CancelFitException
    from gwae.learner import load_state, rep_model, save_state
    from gwae.runs import (RunConfig, RunEvalConfig, build_run, disentanglement, evaluate_model,
                           fid_features, generation_fid, train)
    torch.set_num_threads(1)
    folder, budgets = Path(spec['folder']), sorted(spec['budgets'])
    cfg = RunConfig.from_dict(dict(model=spec['model'], data=spec['data'], evaluation=EVALUATION,
                                   train=dict(epochs=10_000, batch_size=spec['batch_size'], seed=spec['seed'])))

    class Snapshots(Callback):
        "Save the weights when the training clock (validation excluded) passes each budget, then stop."
        order = 95
        def before_fit(self): self.clock, self.todo, self.steps = 0.0, list(budgets), 0
        def before_batch(self): self.t0 = time.perf_counter()
        def after_batch(self):
            if not self.training: return
            self.clock += time.perf_counter() - self.t0; self.steps += 1
            while self.todo and self.clock >= 60 * self.todo[0]:
                minutes = self.todo.pop(0)
                save_state(folder/f'snap_{minutes:g}min.safetensors',
                           dict(weights=rep_model(self.learn).state_dict(), steps=self.steps,
                                seconds=self.clock, load=load_average()))
            if not self.todo: raise CancelFitException()

    train(cfg, folder/'run', progress=False, cbs=[Snapshots()])
    model, dls = build_run(cfg)
    dataset, settings = cfg.ground_truth(), RunEvalConfig(**EVALUATION)
    real = torch.cat([b[0] for b in dls.valid])[:settings.fid_samples]
    features, rows = fid_features(dataset, dls.train, settings), []
    for minutes in budgets:
        snap = load_state(folder/f'snap_{minutes:g}min.safetensors')
        model.load_state_dict(snap['weights']); model.eval()
        t0 = time.perf_counter()
        m = evaluate_model(model, dls.valid)
        scores, _ = disentanglement(model, dataset, settings)
        gen = generation_fid(model, features, real, settings.seed)
        rows.append(dict(minutes=minutes, steps=snap['steps'], train_seconds=round(snap['seconds'], 1),
                         load=round(snap['load'], 2), psnr=m['psnr'], fid=gen['fid'],
                         feature_accuracy=gen['feature_accuracy'],
                         qz_scale=m.get('valid_qz_scale'), pz_scale=m.get('valid_pz_scale'),
                         eval_seconds=round(time.perf_counter() - t0, 1), **scores))
    return dict(spec, processor=cpu_model(), rows=rows)

# ---------------------------------------------------------------- the benchmark

def specs(args)->list[dict]:
    "Every run of the benchmark, interleaved (seed, then dataset, then model) so each model sees the same load."
    out = []
    for seed, data, name in itertools.product(args.seeds, args.datasets, args.models):
        folder = args.runs/f'{data}-{name}-seed{seed}'
        out.append(dict(name=name, data_name=data, seed=seed, folder=str(folder), budgets=args.budgets,
                        model=model_presets(data)[name], batch_size=batch_size(name, data),
                        data=DATA[data]))
    return out

def launch(spec:dict, env:dict)->subprocess.Popen:
    "Start one run's subprocess; it writes result.json in its folder."
    Path(spec['folder']).mkdir(parents=True, exist_ok=True)
    log = open(Path(spec['folder'])/'log.txt', 'w')
    return subprocess.Popen([sys.executable, __file__, '--one', json.dumps(spec)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)

def fit_feature_nets(datasets:list[str]):
    "Fit (or find in the cache) each dataset's feature net once, before runs evaluate in parallel."
    from gwae.evaluation import ground_truth_features
    from gwae.runs import RunConfig, RunEvalConfig
    settings = RunEvalConfig(**EVALUATION)
    for name in datasets:
        cfg = RunConfig.from_dict(dict(model=dict(name='vae'), data=DATA[name]))
        report = ground_truth_features(cfg.ground_truth(), settings.fid_train, settings.seed).report
        print(f"{name} feature net: held-out accuracy {report['accuracy']}, cached {report['cached']}")

SPEC_KEYS = ('name', 'data_name', 'seed', 'budgets', 'model', 'batch_size', 'data')

def restore(todo:list[dict], committed:Path)->int:
    "Write back, as result.json, each committed result whose run is unchanged; the count restored."
    if not committed.exists(): return 0
    kept, n = {json.dumps([r[k] for k in SPEC_KEYS]): r for r in json.loads(committed.read_text())}, 0
    for s in todo:
        old, out = kept.get(json.dumps([s[k] for k in SPEC_KEYS])), Path(s['folder'])/'result.json'
        if old is None or out.exists(): continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(old, folder=s['folder']), indent=1)); n += 1
    return n

def run_all(todo:list[dict], jobs:int)->None:
    "Run the specs `jobs` at a time (each on one thread), skipping those with results."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    pending = [s for s in todo if not (Path(s['folder'])/'result.json').exists()]
    running = []
    while pending or running:
        while pending and len(running) < jobs:
            s = pending.pop(0); running.append((s, launch(s, env)))
            print(f"started {Path(s['folder']).name}", flush=True)
        time.sleep(5)
        for s, p in list(running):
            if p.poll() is None: continue
            running.remove((s, p))
            ok = (Path(s['folder'])/'result.json').exists()
            print(f"{'finished' if ok else 'FAILED (see log.txt)'} {Path(s['folder']).name}", flush=True)

def _mean_std(values:list[float])->str:
    values = [v for v in values if v is not None]
    if not values: return '–'
    if len(values) == 1: return f"{values[0]:.3g}"
    return f"{statistics.mean(values):.3g} ± {statistics.stdev(values):.2g}"

def written(results:list[dict])->str:
    "When and on which processor each dataset's runs of each model were computed (kept results show here)."
    times, cpus = {}, {}
    for r in results:
        key = f"{r['data_name']} {r['name']}"
        if 'finished' in r: times.setdefault(key, []).append(r['finished'])
        cpus.setdefault(key, set()).add(r['processor'])
    def when(n):
        v = times.get(n)
        if not v: return 'earlier (time not recorded)'
        fmt = lambda t: time.strftime('%Y-%m-%d %H:%M', time.gmtime(t))
        return f"{fmt(min(v))}–{fmt(max(v))[-5:]} UTC"
    return '; '.join(f"{n} {when(n)} on {', '.join(sorted(c))}" for n, c in cpus.items())

def failures(todo:list[dict])->str:
    "Markdown list of the runs that stopped without results, each with the last line of its log."
    lines = []
    for s in todo:
        folder = Path(s['folder'])
        if (folder/'result.json').exists(): continue
        log = (folder/'log.txt').read_text().strip().splitlines() if (folder/'log.txt').exists() else []
        lines.append(f"- {folder.name}: {log[-1].strip() if log else 'no log'}")
    return '\n### Runs that stopped\n\n' + '\n'.join(lines) + '\n' if lines else ''

def features_note(results:list[dict], data:str)->str:
    "A line on the FID's feature net for `data`: its held-out accuracy and whether FID can be trusted with it."
    import inspect
    from gwae.evaluation import fit_feature_net
    trusted = inspect.signature(fit_feature_net).parameters['min_accuracy'].default
    acc = {row.get('feature_accuracy') for r in results if r['data_name'] == data for row in r['rows']} - {None}
    if not acc: return ''
    shown = ', '.join(f"{a:.3f}" for a in sorted(acc))
    if min(acc) >= trusted: return f"FID features: held-out accuracy {shown} on the factors.\n"
    return (f"FID features: held-out accuracy {shown} on the factors, below {trusted}: the feature "
            "net tells these images apart only roughly, so read this column as a coarse ranking.\n")

def table(results:list[dict])->str:
    "Markdown: per dataset, one row per budget and model, mean ± std over seeds of steps and each metric."
    lines = []
    for data in dict.fromkeys(r['data_name'] for r in results):
        lines += [f"\n### {data} (generated, 32 px)\n", features_note(results, data),
                  '| minutes | model | batch | seeds | steps | ' + ' | '.join(METRICS) + ' | qz/pz |',
                  '|---:|---|---:|---:|---:|' + '---:|' * len(METRICS) + '---:|']
        runs = [r for r in results if r['data_name'] == data]
        for minutes in sorted({row['minutes'] for r in runs for row in r['rows']}):
            for name in dict.fromkeys(r['name'] for r in runs):
                rows = [row for r in runs if r['name'] == name for row in r['rows']
                        if row['minutes'] == minutes]
                ratio = [row['qz_scale'] / row['pz_scale'] for row in rows
                         if row.get('qz_scale') and row.get('pz_scale')]
                cells = [_mean_std([row.get(m) for row in rows]) for m in METRICS]
                batch = next(r.get('batch_size', 64) for r in runs if r['name'] == name)
                lines.append(f"| {minutes:g} | {name} | {batch} | {len(rows)} | "
                             f"{_mean_std([row['steps'] for row in rows])} | " + ' | '.join(cells)
                             + f" | {_mean_std(ratio)} |")
    return '\n'.join(lines)

def figure(results:list[dict], path:Path):
    "Each metric against minutes, one panel per dataset and metric, mean ± std over seeds."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    datasets = list(dict.fromkeys(r['data_name'] for r in results))
    fig, axes = plt.subplots(len(datasets), len(METRICS), figsize=(3.2 * len(METRICS), 2.6 * len(datasets)),
                             squeeze=False, layout='constrained')
    colours = dict(zip(dict.fromkeys(r['name'] for r in results), plt.get_cmap('tab10').colors))
    for i, data in enumerate(datasets):
        for j, metric in enumerate(METRICS):
            ax = axes[i, j]
            for name, colour in colours.items():
                runs = [r for r in results if r['data_name'] == data and r['name'] == name]
                minutes = sorted({row['minutes'] for r in runs for row in r['rows']})
                v = np.array([[row[metric] for r in runs for row in r['rows'] if row['minutes'] == m]
                              for m in minutes], dtype=float)
                if not v.size: continue
                ax.errorbar(minutes, v.mean(1), yerr=v.std(1, ddof=1) if v.shape[1] > 1 else None,
                            label=name, color=colour, marker='o', ms=3, capsize=2)
            ax.set(title=f"{data}: {metric}", xlabel='training minutes (1 CPU thread)')
            if metric == 'fid': ax.set_yscale('log')
    axes[0, 0].legend(fontsize=7)
    fig.savefig(path, dpi=110)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--budgets', type=float, nargs='+', default=[1, 2, 5, 10], help='minutes')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--datasets', nargs='+', default=list(DATA), choices=list(DATA))
    p.add_argument('--models', nargs='+', default=MODELS, choices=MODELS)
    p.add_argument('--jobs', type=int, default=2, help='runs at once (each on one thread)')
    p.add_argument('--runs', type=Path, default=ROOT/'bench/runs/learning')
    p.add_argument('--quick', action='store_true', help='10 s budgets, seed 0, 3D Shapes; nothing written')
    p.add_argument('--fresh', nargs='*', metavar='MODEL',
                   help='rerun these models (no name: all) instead of keeping the committed results of '
                        'unchanged runs')
    p.add_argument('--one', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        result = dict(run_one(spec), finished=time.time())
        (Path(spec['folder'])/'result.json').write_text(json.dumps(result, indent=1))
        return
    if args.quick:
        args.budgets, args.seeds, args.datasets = [1 / 6], [0], ['shapes3d']
        args.runs = Path(os.environ.get('TMPDIR', '/tmp'))/f'gwae-learning-quick-{os.getpid()}'
    todo, load = specs(args), load_average()
    if not args.quick and args.fresh != []:
        keep = [s for s in todo if s['name'] not in (args.fresh or [])]
        print(f"{restore(keep, ROOT/'bench/results/learning.json')} unchanged runs kept from the committed results")
    fit_feature_nets(args.datasets)
    run_all(todo, args.jobs)
    results = [json.loads((Path(s['folder'])/'result.json').read_text()) for s in todo
               if (Path(s['folder'])/'result.json').exists()]
    loads = [row['load'] for r in results for row in r['rows']]
    head = (f"# Quality per CPU-minute\n\n`python bench/learning.py {' '.join(argv or sys.argv[1:])}` on "
            f"{cpu_model()} ({os.cpu_count()} logical CPUs), {args.jobs} runs at a time on 1 thread each; "
            f"load average {load:.2f} at the start, {min(loads, default=0):.2f}–{max(loads, default=0):.2f} "
            f"at the snapshots; {time.strftime('%Y-%m-%d')}, {len(results)} of {len(todo)} runs. Results written: "
            f"{written(results)} (a run is skipped while its result.json exists in --runs, and an unchanged run "
            "keeps its committed result unless --fresh names its model).\n\n"
            "Minutes: training clock (validation excluded). PSNR in dB on the validation images; MIG and DCI "
            f"disentanglement at evaluation.scale {EVALUATION['scale']} (estimates from "
            f"{int(10000 * EVALUATION['scale'])} codes, for comparing these runs); FID: 512 prior samples against "
            "512 validation images in the features of the dataset's feature net (not Inception: comparable "
            "within a dataset only; lower is better); qz/pz: encoder over prior latent scale (GWAE only).\n")
    text = head + table(results) + '\n' + failures(todo)
    print(text)
    if not args.quick:
        out = ROOT/'bench/results'
        (out/'learning.md').write_text(text)
        (out/'learning.json').write_text(json.dumps(results, indent=1))
        figure(results, out/'learning.png')
        print(f"wrote {out/'learning.md'}, learning.json, learning.png")

if __name__ == '__main__': main()
