"""Runs: config validation, every model through the engine, shipped configs, consistency, a failed start."""
import math
from pathlib import Path

import pytest
import torch

import gwae.test_utils  # noqa: F401  (registers tiny_ae, tiny_blobs, tiny_vectors, tiny_squares)
from gwae.learner import fit
from gwae.runs import MODELS, RunConfig, build_run, load_run, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
imports: [gwae.test_utils]
model: {name: tiny_ae, z_dim: 3, critic_steps: 2}
data: {name: tiny_blobs, n_train: 256}
train: {epochs: 2, batch_size: 16, seed: 7, checkpoint_every: 3, device: cpu}
"""
BUILTIN = sorted(n for n in MODELS if not n.startswith('tiny_'))
BASELINES = [n for n in BUILTIN if n != 'gwae']


@pytest.mark.parametrize('override, message', [
    ('train.epocs=3', "unknown key 'epocs'; did you mean 'epochs'?"),
    ('train.batch_size=0', 'TrainConfig.batch_size must be >= 1'),
    ('train.seed=-1', 'TrainConfig.seed must be >= 0'),
    ('train.grad_clip=abc', "TrainConfig.grad_clip: expected float"),
    ('model.zdim=4', "unknown key 'zdim'; did you mean 'z_dim'?"),
    ('model.name=tiny_ea', "unknown model 'tiny_ea'; did you mean 'tiny_ae'?"),
    ('data.name=shapes3', "unknown dataset 'shapes3'; did you mean 'shapes3d'?"),
    ('data.n_train=0', 'BlobsConfig.n_train must be >= 1'),
    ('modle.z_dim=4', "unknown key 'modle'; did you mean 'model'?"),
])
def test_bad_config_is_rejected_with_the_fix(override, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)').replace('?', r'\?')):
        RunConfig.from_yaml(CONFIG).override([override])


def test_dataset_aliases_are_stored_as_the_one_name():
    for alias, name in (('3dshapes', 'shapes3d'), ('fashion-mnist', 'fashion_mnist'), ('omniglot-standin', 'omniglot_standin')):
        assert RunConfig.from_yaml(CONFIG).override([f'data.name={alias}']).data['name'] == name


SMALL = dict(factor_vae=dict(disc_hidden=16, disc_layers=2), dagmm=dict(est_hidden=8))


@pytest.mark.parametrize('name', BASELINES)
def test_every_baseline_trains_through_fit(name):
    cfg = RunConfig.from_dict(dict(imports=['gwae.test_utils'], model=dict(name=name, z_dim=3, nets=dict(hidden=[16]), **SMALL.get(name, {})),
                                   data=dict(name='tiny_vectors'), train=dict(epochs=2, batch_size=16, device='cpu')))
    model, dls = build_run(cfg)
    learn = fit(model, dls, cfg.train, progress=False)
    h = learn.terms.epochs
    assert len(h) == 2 and len(learn.terms.steps) == 8
    assert all(math.isfinite(v) for r in h for v in r.values())
    assert model.step == 7
    if name == 'beta_tcvae': assert model.cfg.dataset_size == 64  # filled from the training set


def test_gwae_trains_through_fit_with_its_critic(tmp_path):
    cfg = RunConfig.from_dict(dict(imports=['gwae.test_utils'], model=dict(name='gwae', z_dim=4, critic_steps=2, prior=dict(kind='factorized_neural')),
                                   data=dict(name='tiny_squares'), train=dict(epochs=1, batch_size=16, device='cpu')))
    model, dls = build_run(cfg)
    learn = fit(model, dls, cfg.train, path=tmp_path, progress=False)
    assert type(learn.opt.opt).__name__ == 'RMSprop' and type(learn.extra_steps.optimizers['critic']).__name__ == 'RMSprop'
    row = learn.terms.epochs[0]
    assert {'train_loss', 'train_critic.loss', 'valid_loss'} <= set(row) and all(math.isfinite(v) for v in row.values())
    assert len(learn.terms.steps) == 2 and model.x_shape == (1, 28, 28)


@pytest.mark.parametrize('path', sorted((ROOT / 'configs').glob('*.yaml')), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = RunConfig.from_yaml(path)
    # the official batch of 64; the quickstart presets halve it (twice the updates per CPU-minute, said in their comments)
    assert cfg.train.batch_size == (32 if path.name.startswith('quickstart') else 64)


def test_every_model_has_a_config():
    shipped = {RunConfig.from_yaml(p).model['name'] for p in (ROOT / 'configs').glob('*.yaml')}
    assert set(BUILTIN) <= shipped, set(BUILTIN) - shipped


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    "The official config without the CelebA files stops before the run folder exists."
    cfg = RunConfig.from_yaml(ROOT / 'configs' / 'gwae_official.yaml').override([f'data.root={tmp_path / "no-data"}'])
    with pytest.raises(FileNotFoundError, match='celeba not found'): train(cfg, tmp_path / 'run', progress=False)
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('name, settings', [('vae', dict()),
                                            ('gwae', dict(critic_steps=1, prior=dict(kind='factorized_neural')))])
def test_consistency_regularisation_from_a_config(tmp_path, name, settings):
    from gwae.consistency import ConsistencyRegularized
    cfg = RunConfig.from_dict(dict(imports=['gwae.test_utils'], model=dict(name=name, z_dim=3, **settings),
                                   data=dict(name='tiny_squares', n=32, size=28), consistency=dict(lam=2.0),
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


def test_a_run_whose_model_reads_the_training_set_size_loads_and_evaluates(tmp_path):
    "β-TCVAE's dataset_size is filled from the training set when training; load_run builds the same model again."
    cfg = RunConfig.from_dict(dict(imports=['gwae.test_utils'], model=dict(name='beta_tcvae', z_dim=2, nets=dict(hidden=[8])),
                                   data=dict(name='tiny_vectors', n=32), train=dict(epochs=1, batch_size=16, device='cpu')))
    train(cfg, tmp_path / 'run', progress=False)
    run = load_run(tmp_path / 'run')
    assert run.model.cfg.dataset_size == 32
    from gwae.runs import evaluate_run
    assert math.isfinite(evaluate_run(tmp_path / 'run')['valid_loss'])  # as gwae train does after training


def test_ground_truth_figures_follow_the_dci_importance(tmp_path, monkeypatch):
    import numpy as np
    import gwae.runs
    from gwae.runs import evaluate_run, run_figures
    cfg = RunConfig.from_dict(dict(model=dict(name='vae', z_dim=3), data=dict(name='dsprites', size=32, n_train=64, n_valid=40, in_memory=True),
                                   train=dict(epochs=1, batch_size=32, device='cpu'), evaluation=dict(metrics=[], scale=0.01)))
    train(cfg, tmp_path / 'run', progress=False)
    seen = []  # the items evaluate_run draws the figures from: all 40 validation items, not the first batch of 32
    monkeypatch.setattr(gwae.runs, 'run_figures', lambda model, x, *a, **k: seen.append(len(x)) or run_figures(model, x, *a, **k))
    m = evaluate_run(tmp_path / 'run')
    assert seen == [40]
    assert {'figures/importance.png', 'figures/distortion.png', 'figures/traversals.png'} <= set(m['figures'])
    names, imp = m['dci_importance']['factor_names'], np.array(m['dci_importance']['codes'])
    assert names == ['shape', 'scale', 'orientation', 'posX', 'posY'] and imp.shape == (3, 5)
    assert np.allclose(imp.sum(0), 1, atol=1e-3) and 'disentanglement' not in m  # importance without the metrics
    run = load_run(tmp_path / 'run')
    x = torch.cat([b[0] for b in cfg.build_dls().valid])
    figures = run_figures(run.model, x, run.history, importance=imp, factor_names=names, source='dsprites (generated)')
    rows = [t.get_text() for ax in figures['traversals'].axes for t in ax.texts]
    order = np.argsort(-imp.sum(1), kind='stable')
    assert [int(r.split()[0][1:]) for r in rows] == list(order)  # z<d>, most important first
    assert [r.split()[1] for r in rows] == [names[imp[d].argmax()] for d in order]  # the factor each code captures most
    heat = figures['importance'].axes[0]
    assert [t.get_text() for t in heat.get_xticklabels()] == names and np.allclose(heat.collections[0].get_array().reshape(3, 5), imp)
    assert figures['traversals']._suptitle.get_text().endswith('· dsprites (generated)')
    # the shown items are random validation items, seeded: not the first batch, the same for the same seed
    first = [a.images[0].get_array().data for a in figures['reconstructions'].axes[:8]]
    assert not all(np.array_equal(f, x[i, 0].numpy()) for i, f in enumerate(first))
    again = run_figures(run.model, x, [], seed=0)['reconstructions']
    assert all(np.array_equal(f, a.images[0].get_array().data) for f, a in zip(first, again.axes[:8]))


def test_experiment_gwae_settings_are_the_quickstart_preset():
    # gwae.experiments ships a copy of configs/quickstart.yaml (the package has no configs/): they must not drift.
    # Three documented differences: the committed experiments ran before the quickstart took the prior's uniform
    # noise, the match weight coef_d 3 (official 1) and the entropy weight coef_entropy 0.3 (the experiments' 0.1).
    from gwae.experiments import DISENTANGLEMENT_MODELS
    quick = RunConfig.from_yaml(ROOT / 'configs' / 'quickstart.yaml')
    model, batch = DISENTANGLEMENT_MODELS['gwae_fnp']
    experiment = RunConfig.from_dict(dict(model=model, data=quick.data)).model
    assert quick.model['prior']['noise'] == 'uniform' and experiment['prior']['noise'] == 'normal'
    assert quick.model['coef_d'] == 3.0 and experiment['coef_d'] == 1.0
    assert quick.model['coef_entropy'] == 0.3 and experiment['coef_entropy'] == 0.1
    assert experiment == {**quick.model, 'prior': {**quick.model['prior'], 'noise': 'normal'}, 'coef_d': 1.0,
                          'coef_entropy': 0.1}
    assert batch == quick.train.batch_size
