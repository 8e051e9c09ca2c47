"""Seconds per training step of GWAE (each prior) and of a VAE with the same encoder/decoder, on CPU.

Batch 64 of 64×64×3 random images, z_dim 64. For each model: the median over `--steps` timed steps after `--warmup`
untimed ones, with 1 and with 2 torch threads; for GWAE the step is one main update plus 5 critic updates, also timed
separately. Also: the GW term's share of the step (timed alone, with the naive official form for comparison), and each
model's peak resident memory (each model runs in its own subprocess so the peaks do not mix). Prints a markdown table and writes it to `bench/results/step_time.md`.

    python bench/step_time.py            # about 2 minutes on a quiet 2-core machine
"""
from __future__ import annotations
import argparse, json, os, platform, resource, statistics, subprocess, sys, time
from pathlib import Path

OFFICIAL = {  # official code on the same machine kind (2 vCPU AMD EPYC Zen 3, torch 2.13.0 CPU), from DESIGN.md
    1: dict(gwae=3.41, main=1.33, critic=0.40, vae=0.45),
    2: dict(gwae=1.87, main=0.73, critic=0.22, vae=0.245),
}
MODELS = ['gwae-neural', 'gwae-factorized_neural', 'gwae-gm', 'gwae-normal', 'gwae-neural-fused', 'vae']

def _cpu_model()->str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'

def _build(name:str):
    import torch
    from torch import nn
    from gwae.gwae import GWAE, build_optimizers
    from gwae.models import OptimizerConfig, RepresentationModel, reparameterize
    from gwae.nets import make_decoder, make_encoder
    if name.startswith('gwae'):
        parts = name.split('-')
        m = GWAE(prior={'kind': parts[1]}, fused_critic=parts[-1] == 'fused')
        return m, build_optimizers(m)

    class VAE(RepresentationModel):
        "Plain VAE with the official encoder/decoder: ½‖x − x̂‖² + KL, Adam."
        def __init__(self):
            super().__init__()
            self.z_dim, self.encoder, self.decoder = 64, make_encoder((3, 64, 64), 64), make_decoder((3, 64, 64), 64)
        def encode(self, x): return self.encoder(x)
        def decode(self, z): return self.decoder(z)
        def loss(self, x):
            mu, logvar = self.encode(x)
            rec = 0.5 * (x - self.decode(reparameterize(mu, logvar))).square().flatten(1).sum(1).mean()
            kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
            return dict(loss=rec + kl, rec=rec, kl=kl)
    m = VAE()
    return m, {'main': OptimizerConfig('adam', lr=1e-4).build(m.parameters())}

def _time_model(name:str, threads:list[int], steps:int, warmup:int)->dict:
    "Run in a subprocess: per thread count, median seconds of the whole step, the main and the critic part."
    import torch
    from gwae.core import seed_everything
    seed_everything(0)
    model, opts = _build(name)
    model.train()
    x = torch.rand(64, 3, 64, 64)
    res = {}
    for n in threads:
        torch.set_num_threads(n)
        mains, critics = [], []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            out = model.loss(x); out['loss'].backward(); opts['main'].step()
            t1 = time.perf_counter()
            for s in model.extra_steps():
                for _ in range(s.n_steps):
                    model.zero_grad(set_to_none=True)
                    s.loss(x)['loss'].backward(); opts[s.name].step()
            t2 = time.perf_counter()
            if i >= warmup: mains.append(t1 - t0); critics.append(t2 - t1)
        totals = [a + b for a, b in zip(mains, critics)]
        res[n] = dict(step=statistics.median(totals), main=statistics.median(mains), critic=statistics.median(critics))
    res['rss_gib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return res

def _time_gw(threads, steps)->dict:
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
    for n in threads:
        torch.set_num_threads(n)
        for label, f in (('ours', lambda: gw(z, x)), ('naive', naive)):
            ts = []
            for i in range(steps + 1):
                t0 = time.perf_counter(); f().backward(); ts.append(time.perf_counter() - t0)
            out[f'{label}{n}'] = statistics.median(ts[1:])
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=2, help='timed steps per model and thread count (median)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed steps first')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--models', nargs='+', default=MODELS, choices=MODELS)
    ap.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'step_time.md'))
    ap.add_argument('--_child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        res = _time_gw(a.threads, a.steps) if a._child == 'gw-term' else _time_model(a._child, a.threads, a.steps, a.warmup)
        print(json.dumps(res))
        return
    import torch
    t_start, load0 = time.time(), os.getloadavg()
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    results = {}
    for name in [*a.models, 'gw-term']:
        cmd = [sys.executable, __file__, '--_child', name, '--steps', str(a.steps), '--warmup', str(a.warmup),
               '--threads', *map(str, a.threads)]
        results[name] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f'{name}: done', file=sys.stderr)
    load1 = os.getloadavg()

    lines = [f'# Step time on CPU', '',
             f'Machine: {_cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}; Python {platform.python_version()}.  ',
             f'Load average (1 min) before/after: {load0[0]:.2f} / {load1[0]:.2f}; run took {time.time() - t_start:.0f} s; '
             f'median of {a.steps} steps after {a.warmup} warm-up; batch 64, 64×64×3, z_dim 64; random images.', '',
             '| model | threads | s/step | main | critic (5 steps) | vs VAE | vs official GWAE | peak RSS (GiB) |',
             '|---|---|---|---|---|---|---|---|']
    vae, gw = results.get('vae'), results.pop('gw-term')
    for name, r in results.items():
        for n in a.threads:
            t = r[str(n)]
            ratio = f"{t['step'] / vae[str(n)]['step']:.1f}×" if vae and name != 'vae' else ''
            off = OFFICIAL.get(n)
            speedup = f"{off['gwae'] / t['step']:.2f}× faster" if off and name != 'vae' else ''
            if name == 'vae' and off: speedup = f"official VAE {off['vae']:.2f} s"
            crit = f"{t['critic']:.3f}" if name != 'vae' else ''
            lines.append(f"| {name} | {n} | {t['step']:.3f} | {t['main']:.3f} | {crit} | {ratio} | {speedup} | {r['rss_gib']:.2f} |")
    if 'gwae-neural' in results:
        lines += ['', '| GW term (forward + backward) | threads | seconds | share of a gwae-neural step |', '|---|---|---|---|']
        for n in a.threads:
            step = results['gwae-neural'][str(n)]['step']
            for label in ('ours', 'naive'):
                lines.append(f"| {'centred Gram (gwae.gw)' if label == 'ours' else 'naive B×B×P broadcast (official form)'} | {n} | "
                             f"{gw[f'{label}{n}']:.3f} | {gw[f'{label}{n}'] / step:.1%} |")
    lines += ['', 'Official reference (same machine kind, neural prior): GWAE main + 5 critic 3.41 s/step at 1 thread '
              '(main 1.33, one critic step 0.40), 1.84-1.90 at 2 threads; VAE 0.44-0.46 (1 thread), 0.24-0.25 (2 threads).']
    text = '\n'.join(lines) + '\n'
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)

if __name__ == '__main__': main()
