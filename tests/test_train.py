"""Fault injection for `gwae.train`: SIGKILL and resume, corrupt checkpoints, NaN guard, config validation."""
import importlib.util, math, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import tiny_registry  # noqa: F401  (registers test_tiny / test_blobs)
from gwae.cli import main
from gwae.models import MODELS as BASELINES
from gwae.train import NonFiniteLossError, RunConfig, load_state, read_csv, resume, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
imports: [tiny_registry]
model: {name: test_tiny, z_dim: 3, critic_steps: 2}
data: {name: test_blobs, n_train: 256}
train: {epochs: 2, batch_size: 16, seed: 7, deterministic: true, checkpoint_every: 3, device: cpu}
"""


def _env():
    path = [str(ROOT), str(Path(__file__).parent)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    return {**os.environ, 'PYTHONPATH': os.pathsep.join(path),
            'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}


def _weights(path):
    return load_state(Path(path) / 'checkpoint.safetensors')['model']


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    cfg = RunConfig.from_yaml(CONFIG)
    train(cfg, tmp_path / 'full', progress=False)
    slow = cfg.override(['model.sleep=0.05'])
    (tmp_path / 'slow.yaml').write_text(slow.to_yaml())
    proc = subprocess.Popen([sys.executable, '-c', 'from gwae.cli import main; raise SystemExit(main())', 'train',
                             str(tmp_path / 'slow.yaml'), '--out', str(tmp_path / 'killed'), '--quiet', '--no-evaluate'],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt, deadline = tmp_path / 'killed' / 'checkpoint.safetensors', time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and load_state(ckpt)['progress']['step'] >= 19: break  # epoch 1 (16 steps/epoch), mid-epoch
        time.sleep(0.02)
    time.sleep(0.07)  # land between checkpoints
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, out
    progress = load_state(ckpt)['progress']
    assert 19 <= progress['step'] < 32 and progress['batch'] > 0, progress
    resume(tmp_path / 'killed', progress=False)
    full, resumed = _weights(tmp_path / 'full'), _weights(tmp_path / 'killed')
    assert full.keys() == resumed.keys()
    for k in full: torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0)
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]
    assert strip(read_csv(tmp_path / 'killed' / 'steps.csv')) == strip(read_csv(tmp_path / 'full' / 'steps.csv'))
    assert read_csv(tmp_path / 'killed' / 'history.csv') == read_csv(tmp_path / 'full' / 'history.csv')


@pytest.mark.parametrize('damage', ['truncate', 'flip'])
def test_corrupt_checkpoint_is_refused_not_restarted(tmp_path, capsys, damage):
    cfg = RunConfig.from_yaml(CONFIG).override(['train.epochs=1'])
    train(cfg, tmp_path / 'run', progress=False)
    ckpt = tmp_path / 'run' / 'checkpoint.safetensors'
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:len(data) // 3] if damage == 'truncate' else data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match='truncated or corrupt'): resume(tmp_path / 'run', epochs=2, progress=False)
    assert ckpt.read_bytes() == before  # nothing was overwritten
    assert len(read_csv(tmp_path / 'run' / 'history.csv')) == 1
    assert main(['resume', str(tmp_path / 'run'), '--quiet']) == 1
    assert 'truncated or corrupt' in capsys.readouterr().err


def test_missing_checkpoint_is_an_error(tmp_path):
    cfg = RunConfig.from_yaml(CONFIG)
    (tmp_path / 'run').mkdir(); cfg.to_yaml(tmp_path / 'run' / 'config.yaml')
    with pytest.raises(FileNotFoundError, match='no checkpoint'): resume(tmp_path / 'run', progress=False)


def test_nan_stops_with_term_and_step_named_keeping_last_good_checkpoint(tmp_path):
    cfg = RunConfig.from_yaml(CONFIG).override(['model.nan_at_step=7'])
    with pytest.raises(NonFiniteLossError, match=r"loss term 'kl' is nan at step 7 \(epoch 0, training\).*checkpoint") as e:
        train(cfg, tmp_path / 'run', progress=False)
    assert 'checkpoint.safetensors' in str(e.value)
    state = load_state(tmp_path / 'run' / 'checkpoint.safetensors')
    assert state['progress']['step'] == 6
    assert all(torch.isfinite(v).all() for v in state['model'].values())


@pytest.mark.parametrize('override, message', [
    ('train.epocs=3', "unknown key 'epocs'; did you mean 'epochs'?"),
    ('train.batch_size=0', 'TrainConfig.batch_size must be >= 1'),
    ('train.seed=-1', 'TrainConfig.seed must be >= 0'),
    ('train.grad_clip=abc', "TrainConfig.grad_clip: expected float"),
    ('model.zdim=4', "unknown key 'zdim'; did you mean 'z_dim'?"),
    ('model.name=test_tyni', "unknown model 'test_tyni'; did you mean 'test_tiny'?"),
    ('data.n_train=0', 'BlobsCfg.n_train must be >= 1'),
    ('modle.z_dim=4', "unknown key 'modle'; did you mean 'model'?"),
])
def test_bad_config_is_rejected_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)').replace('?', r'\?')):
        RunConfig.from_yaml(CONFIG).override([override])


def test_mixed_precision_needs_cuda(tmp_path):
    if torch.cuda.is_available(): pytest.skip('CUDA present')
    with pytest.raises(ValueError, match='mixed_precision needs a CUDA device'):
        train(RunConfig.from_yaml(CONFIG).override(['train.mixed_precision=true']), tmp_path / 'run', progress=False)


SMALL = dict(factor_vae=dict(disc_hidden=16, disc_layers=2), dagmm=dict(est_hidden=8))


@pytest.mark.parametrize('name', sorted(BASELINES))
def test_every_baseline_trains_through_fit(name):
    from gwae.train import build_run, fit
    cfg = RunConfig.from_dict(dict(imports=['tiny_registry'], model=dict(name=name, z_dim=3, nets=dict(hidden=[16]), **SMALL.get(name, {})),
                                   data=dict(name='test_vectors'), train=dict(epochs=2, batch_size=16, device='cpu')))
    model, dls = build_run(cfg)
    learn = fit(model, dls, cfg.train, progress=False)
    h = learn.terms.epochs
    assert len(h) == 2 and len(learn.terms.steps) == 8
    assert all(math.isfinite(v) for r in h for v in r.values())
    assert model.step == 7
    if name == 'beta_tcvae': assert model.cfg.dataset_size == 64  # filled from the training set


DDP_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import tiny_registry
from gwae.train import RunConfig, build_run, fit, save_state
cfg = RunConfig.from_yaml(sys.argv[1])
model, dls = build_run(cfg)
learn = fit(model, dls, cfg.train, path=sys.argv[2], progress=False)
save_state(os.path.join(sys.argv[2], f"rank{{os.environ['RANK']}}.safetensors"), model.state_dict())
"""


@pytest.mark.skipif(importlib.util.find_spec('accelerate') is None, reason="fastai's data parallel training needs accelerate")
def test_data_parallel_two_cpu_processes_stay_in_sync(tmp_path):
    "2 processes, gloo on CPU: each trains on its shard, main (DDP) and critic (all-reduce) weights stay identical."
    (tmp_path / 'run.py').write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    (tmp_path / 'cfg.yaml').write_text(RunConfig.from_yaml(CONFIG).override(['train.epochs=1']).to_yaml())
    env = {**_env(), 'ACCELERATE_USE_CPU': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29561',
                        str(tmp_path / 'run.py'), str(tmp_path / 'cfg.yaml'), str(tmp_path / 'out')],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = load_state(tmp_path / 'out' / 'rank0.safetensors'), load_state(tmp_path / 'out' / 'rank1.safetensors')
    for k in w0: torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    assert len(read_csv(tmp_path / 'out' / 'steps.csv')) == 256 // 16 // 2  # each process did half the batches


def test_gwae_trains_through_fit_with_its_critic(tmp_path):
    from gwae.train import build_run, fit, load_run
    cfg = RunConfig.from_dict(dict(imports=['tiny_registry'], model=dict(name='gwae', z_dim=4, critic_steps=2, prior=dict(kind='factorized_neural')),
                                   data=dict(name='test_squares'), train=dict(epochs=1, batch_size=16, device='cpu')))
    model, dls = build_run(cfg)
    learn = fit(model, dls, cfg.train, path=tmp_path, progress=False)
    assert type(learn.opt.opt).__name__ == 'RMSprop' and type(learn.extra_steps.optimizers['critic']).__name__ == 'RMSprop'
    row = learn.terms.epochs[0]
    assert {'train_loss', 'train_critic.loss', 'valid_loss'} <= set(row) and all(math.isfinite(v) for v in row.values())
    assert len(learn.terms.steps) == 2 and (model.cfg.channels, model.cfg.size) == (1, 28)


@pytest.mark.parametrize('path', sorted((ROOT / 'configs').glob('*.yaml')), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = RunConfig.from_yaml(path)
    assert cfg.train.batch_size == 64


def test_every_model_has_a_config():
    shipped = {RunConfig.from_yaml(p).model['name'] for p in (ROOT / 'configs').glob('*.yaml')}
    assert set(BASELINES) | {'gwae'} <= shipped, set(BASELINES) - shipped


def test_fit_gives_the_weights_of_the_reference_train_step():
    "The engine and the reference loop of gwae.models: same seed, same batches, identical weights (critic included)."
    import copy
    from gwae.models import build_optimizers, train_step
    from gwae.train import build_run, epoch_order, fit
    cfg = RunConfig.from_yaml(CONFIG).override(['train.epochs=1', 'data.n_train=64'])
    model, dls = build_run(cfg)
    ref, rng = copy.deepcopy(model), torch.get_rng_state()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, dls, cfg.train, progress=False)
    torch.set_rng_state(rng)
    opts, bs = build_optimizers(ref), cfg.train.batch_size
    images, order = dls.train.dataset.tensors[0], epoch_order(64, cfg.train.seed, 0)
    ref.train()
    for step in range(64 // bs):
        ref.set_step(step)
        train_step(ref, opts, images[order[bs * step:bs * (step + 1)]])
    ours, theirs = model.state_dict(), ref.state_dict()
    for k in ('enc.weight', 'dec.weight', 'critic.0.weight'): assert not torch.equal(ours[k], start[k]), k  # all trained
    for k in ours: torch.testing.assert_close(ours[k], theirs[k], rtol=0, atol=0)


@pytest.mark.parametrize('name, settings', [('vae', dict()),
                                            ('gwae', dict(critic_steps=1, prior=dict(kind='factorized_neural')))])
def test_consistency_regularisation_from_a_config(tmp_path, name, settings):
    from gwae.models import ConsistencyRegularized
    from gwae.train import load_run
    cfg = RunConfig.from_dict(dict(imports=['tiny_registry'], model=dict(name=name, z_dim=3, **settings),
                                   data=dict(name='test_squares', n=32, size=28), consistency=dict(lam=2.0),
                                   train=dict(epochs=1, batch_size=16, device='cpu')))
    assert cfg.consistency.lam == 2.0 and cfg.consistency.augmented_loss
    learn = train(cfg, tmp_path / 'run', progress=False)
    model = learn.model.model
    assert isinstance(model, ConsistencyRegularized) and model.cfg.lam == 2.0
    row = learn.terms.epochs[0]
    assert {'train_consistency', 'train_base_loss', 'train_aug_loss', 'valid_consistency'} <= set(row), row
    assert all(math.isfinite(v) for v in row.values()) and row['train_consistency'] > 0
    assert len(learn.terms.steps) == 2
    run = load_run(tmp_path / 'run', which='last')
    assert isinstance(run.model, ConsistencyRegularized) and run.config.consistency == cfg.consistency
    plain = cfg.override(['consistency=null'])
    assert plain.consistency is None and not isinstance(plain.build_model((1, 28, 28)), ConsistencyRegularized)
