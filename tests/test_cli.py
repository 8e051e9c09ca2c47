"""The `gwae` command line: help texts, a tiny train run end to end, evaluate."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

import gwae
import gwae.test_utils  # noqa: F401  (registers tiny_ae / tiny_blobs)
from gwae.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
imports: [gwae.test_utils]
model: {name: tiny_ae, z_dim: 2}
data: {name: tiny_blobs, n_train: 64, n_valid: 32}
train: {epochs: 1, batch_size: 16, device: cpu}
"""


def test_gwae_help_is_fast_and_lists_commands():
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    r = subprocess.run([sys.executable, '-c', 'from gwae.cli import main; raise SystemExit(main())', '--help'],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for cmd in ("train", "resume", "evaluate", "data", "study"): assert cmd in r.stdout
    assert 'torch' not in subprocess.run([sys.executable, '-c', 'import sys, gwae.cli; print(sorted(sys.modules))'],
                                         env=env, capture_output=True, text=True).stdout


def test_version_no_command_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as e: main(['--version'])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f'gwae {gwae.__version__}'
    assert main([]) == 0
    assert capsys.readouterr().out.startswith('usage: gwae')
    with pytest.raises(SystemExit) as e: main(['trian'])
    assert e.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_help_in_a_fresh_process_lists_only_shipped_models_and_datasets():
    r = subprocess.run([sys.executable, '-c', 'from gwae.cli import main; raise SystemExit(main())', 'train', '--help'],
                       env={**os.environ, 'PYTHONPATH': str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = [l for l in r.stdout.splitlines() if l.lstrip().startswith(('model.name', 'data.name'))]
    assert len(names) == 2 and 'gwae' in names[0] and 'dsprites' in names[1], names
    assert 'tiny_' not in r.stdout  # the fixtures register only when gwae.test_utils is imported


def test_train_help_explains_every_option_and_key(capsys):
    with pytest.raises(SystemExit) as e: main(['train', '--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ('--set', '--out', '--runs-dir', '--no-evaluate', '--quiet', 'model.name', 'data.name',
                 'train.epochs', 'train.until_convergence', 'train.patience', 'train.checkpoint_every',
                 'train.grad_clip', 'train.mixed_precision', 'train.channels_last', 'train.device', 'gwae', 'factor_vae', 'shapes3d',
                 'evaluation.scale', 'evaluation.sample', 'evaluation.metrics', 'consistency.lam'):
        assert text in out, text
    for cmd in ('resume', 'evaluate'):
        with pytest.raises(SystemExit): main([cmd, '--help'])
        assert 'RUN' in capsys.readouterr().out


def test_tiny_train_then_evaluate_end_to_end(tmp_path, capsys):
    (tmp_path / 'tiny.yaml').write_text(CONFIG)
    rc = main(['train', str(tmp_path / 'tiny.yaml'), '--set', 'model.z_dim=3', 'train.epochs=2',
               '--runs-dir', str(tmp_path / 'runs'), '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = Path(out.strip().splitlines()[-1].removeprefix('run folder: '))
    assert run.parent == tmp_path / 'runs' and run.name.startswith('tiny_ae-tiny_blobs-')
    assert 'z_dim: 3' in (run / 'config.yaml').read_text() and 'epochs: 2' in (run / 'config.yaml').read_text()
    assert len((run / 'history.csv').read_text().splitlines()) == 3
    for f in ('reconstructions', 'samples', 'traversals', 'distortion', 'loss_curves'): assert (run / 'figures' / f'{f}.png').stat().st_size > 0
    (run / 'metrics.json').unlink()
    assert main(['evaluate', str(run), '--which', 'last']) == 0
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['weights'] == 'last' and 0 < metrics['psnr'] < 60 and 'valid_rec' in metrics
    assert f'run folder: {run}' in capsys.readouterr().out


def test_resume_extends_a_finished_run(tmp_path, capsys):
    (tmp_path / 'tiny.yaml').write_text(CONFIG)
    assert main(['train', str(tmp_path / 'tiny.yaml'), '--out', str(tmp_path / 'r'), '--quiet', '--no-evaluate']) == 0
    assert len((tmp_path / 'r' / 'history.csv').read_text().splitlines()) == 2
    assert main(['resume', str(tmp_path / 'r'), '--epochs', '2', '--quiet', '--no-evaluate']) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run folder: {tmp_path / 'r'}"
    assert len((tmp_path / 'r' / 'history.csv').read_text().splitlines()) == 3
    assert 'epochs: 2' in (tmp_path / 'r' / 'config.yaml').read_text()


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    (tmp_path / 'tiny.yaml').write_text(CONFIG)
    assert main(['train', str(tmp_path / 'tiny.yaml'), '--set', 'train.epocs=2']) == 1
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(['train', str(tmp_path / 'missing.yaml')]) == 1
    assert 'config file not found' in capsys.readouterr().err
    assert main(['resume', str(tmp_path)]) == 1
    assert 'config.yaml' in capsys.readouterr().err
    assert main(['evaluate', str(tmp_path / 'nothing')]) == 1
    assert 'not a run folder' in capsys.readouterr().err


def test_nan_is_one_clear_message(tmp_path, capsys):
    (tmp_path / 'tiny.yaml').write_text(CONFIG)
    assert main(['train', str(tmp_path / 'tiny.yaml'), '--set', 'model.nan_at_step=2', '--out', str(tmp_path / 'r'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert err.startswith("gwae train: error: loss term 'kl' is nan at step 2") and 'Exception occured' not in err, err


def test_data_help_names_every_dataset(capsys):
    from gwae.cli import DATA_NAMES
    from gwae.datasets import FILE_DATASETS
    assert DATA_NAMES == FILE_DATASETS  # the command line knows them without importing torch
    for action in ('fetch', 'preview'):
        with pytest.raises(SystemExit) as e: main(['data', action, '--help'])
        assert e.value.code == 0
        out = capsys.readouterr().out
        for name in FILE_DATASETS: assert name in out, (action, name)
        assert '--root' in out
    assert '--out' in out and '--n' in out


def test_data_fetch_explains_what_cannot_be_downloaded(tmp_path, capsys):
    assert main(['data', 'fetch', '3dshapes', '--root', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('gwae data: error: shapes3d cannot be downloaded automatically') and '3dshapes.h5' in err, err
    assert str(tmp_path / 'shapes3d') in err
    assert main(['data', 'fetch', 'imagenet', '--root', str(tmp_path)]) == 1
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_data_preview_generated_then_file(tmp_path, capsys):
    from PIL import Image
    from gwae.test_utils import write_shapes3d_fixture
    png = tmp_path / 'shapes.png'
    assert main(['data', 'preview', '3dshapes', '--root', str(tmp_path / 'data'), '--out', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'previewing the generated shapes3d (source: generated)' in out and Image.open(png).size[0] > 50, out
    write_shapes3d_fixture(tmp_path / 'data' / '3dshapes' / '3dshapes.h5')
    png.unlink()
    assert main(['data', 'preview', '3dshapes', '--root', str(tmp_path / 'data'), '--out', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'previewing' not in out and '(source: generated)' not in out and f"file:{tmp_path / 'data' / '3dshapes' / '3dshapes.h5'}" in out and png.exists(), out


def test_data_preview_dsprites_generated_then_file(tmp_path, capsys):
    from gwae.dsprites import DSPRITES_FILE
    from gwae.test_utils import write_dsprites_fixture
    png = tmp_path / 'dsprites.png'
    assert main(['data', 'preview', 'dsprites', '--root', str(tmp_path / 'data'), '--out', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'previewing the generated dsprites' in out and png.stat().st_size > 0, out
    fixture = write_dsprites_fixture(tmp_path / 'data' / 'dsprites' / f'{DSPRITES_FILE}.npz')
    assert main(['data', 'preview', 'dsprites', '--root', str(tmp_path / 'data'), '--out', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'previewing' not in out and f'dsprites (file:{fixture}): wrote {png}' in out, out


def test_data_of_celeba_says_how_to_get_it(tmp_path, capsys):
    assert main(['data', 'fetch', 'celeba', '--root', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert 'celeba cannot be downloaded automatically' in err and 'list_eval_partition.txt' in err, err
    assert main(['data', 'preview', 'celeba', '--root', str(tmp_path)]) == 1
    assert 'celeba not found' in capsys.readouterr().err


def test_data_preview_of_labelled_files(tmp_path, capsys):
    from gwae.test_utils import write_celeba_fixture
    write_celeba_fixture(tmp_path, n=6)
    png = tmp_path / 'celeba.png'
    assert main(['data', 'preview', 'celeba', '--root', str(tmp_path), '--out', str(png), '--n', '2']) == 0
    assert 'file:' in capsys.readouterr().out and png.stat().st_size > 0
    assert main(['data', 'preview', 'mnist', '--root', str(tmp_path / 'empty')]) == 1
    assert 'mnist not found' in capsys.readouterr().err


def test_ground_truth_run_reports_disentanglement(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('GWAE_CACHE', str(tmp_path / 'cache'))
    cfg = tmp_path / 'gt.yaml'
    cfg.write_text("""
model: {name: vae, z_dim: 3}
data: {name: dsprites, size: 32, n_train: 64, n_valid: 32, in_memory: true}
train: {epochs: 1, batch_size: 32, device: cpu}
evaluation: {metrics: [mig, dci_fast, beta_vae], scale: 0.01, fid_train: 200}
""")
    assert main(['train', str(cfg), '--out', str(tmp_path / 'run'), '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'mig.discrete_mig=' in out and 'dci_fast.disentanglement=' in out, out
    m = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert m['evaluation']['dataset']['source'] == 'generated' and m['evaluation']['scale'] == 0.01
    assert m['evaluation']['protocol']['mig']['num_train'] == 100 and m['evaluation']['protocol']['beta_vae']['batch_size'] == 16
    assert m['evaluation']['estimators']['dci_fast'] == "gwae.metrics:dci(estimator='fast')"
    assert m['evaluation']['model']['representation'] == 'embed(x, sample=False)' and 'torch' in m['evaluation']['versions']
    assert 0 <= m['disentanglement']['mig.discrete_mig'] <= 1 and 0 < m['psnr'] < 60
    assert main(['evaluate', str(tmp_path / 'run'), '--sample', '--metrics', 'sap', '--scale', '0.02']) == 0
    m2 = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert set(m2['disentanglement']) == {'sap.SAP_score'} and m2['evaluation']['model']['representation'] == 'embed(x, sample=True)'
    assert m2['evaluation']['protocol']['sap']['num_train'] == 200
    assert 'fid' not in m2  # off unless asked for
    assert main(['evaluate', str(tmp_path / 'run'), '--metrics', 'sap', '--fid-samples', '24']) == 0
    m3 = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert f"fid={m3['fid']:.4g}" in capsys.readouterr().out and m3['fid'] > 0
    assert (m3['generation']['n_real'], m3['generation']['n_fake']) == (24, 24)
    assert m3['generation']['feature_net']['n_train'] == 160 and 'feature-net' in m3['generation']['features']
    assert len(list((tmp_path / 'cache' / 'feature_nets').iterdir())) == 1
    assert main(['evaluate', str(tmp_path / 'run'), '--metrics', 'sap', '--ood', 'omniglot_standin']) == 0
    m4 = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    ood = m4['ood']['omniglot_standin']
    assert ood['data'] == 'omniglot_standin' and 0 <= ood['auroc'] <= 1 and not ood['invert'], ood
    assert ood['n_in'] == 32 and 'figures/roc.png' in m4['figures']


def test_experiment_refuses_an_unknown_name_before_starting_ray(capsys):
    assert main(['experiment', 'disentanglment', '--preset', 'smoke']) == 1
    err = capsys.readouterr().err
    assert 'gwae experiment: error:' in err and 'disentanglement' in err, err  # the closest name
    with pytest.raises(SystemExit): main(['experiment', 'disentanglement', '--preset', 'gpu'])
