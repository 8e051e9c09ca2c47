"""Fault injection for the training engine: SIGKILL and resume, corrupt checkpoints, the NaN guard, data parallel."""
import importlib.util, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

import gwae.test_utils  # noqa: F401  (registers tiny_ae and tiny_blobs)
from gwae.cli import main
from gwae.learner import NonFiniteLossError, load_state, read_csv
from gwae.runs import RunConfig, resume, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
imports: [gwae.test_utils]
model: {name: tiny_ae, z_dim: 3, critic_steps: 2}
data: {name: tiny_blobs, n_train: 256}
train: {epochs: 2, batch_size: 16, seed: 7, deterministic: true, checkpoint_every: 3, device: cpu}
"""


def _env():
    path = [str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
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
    def step_written():  # the checkpoint's step, or -1 while it cannot be read
        # The trainer replaces the file while this process polls it, and safetensors opens it by name twice (header,
        # then mapping), so one read can meet two versions: a race of this poll, not a damaged file.
        try: return load_state(ckpt)['progress']['step']
        except (FileNotFoundError, ValueError, RuntimeError): return -1
    while time.time() < deadline and proc.poll() is None:
        if step_written() >= 19: break  # epoch 1 (16 steps/epoch), mid-epoch
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


def test_mixed_precision_needs_cuda(tmp_path):
    if torch.cuda.is_available(): pytest.skip('CUDA present')
    with pytest.raises(ValueError, match='mixed_precision needs a CUDA device'):
        train(RunConfig.from_yaml(CONFIG).override(['train.mixed_precision=true']), tmp_path / 'run', progress=False)


DDP_SCRIPT = """
import os, sys
import torch
from gwae.runs import RunConfig, build_run
from gwae.learner import fit, save_state
cfg = RunConfig.from_yaml(sys.argv[1])
model, dls = build_run(cfg)
learn = fit(model, dls, cfg.train, path=sys.argv[2], progress=False)
save_state(os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.safetensors"), model.state_dict())
if torch.distributed.is_initialized(): torch.distributed.destroy_process_group()  # a clean exit of the gloo threads
"""


@pytest.mark.skipif(importlib.util.find_spec('accelerate') is None, reason="fastai's data parallel training needs accelerate")
def test_data_parallel_two_cpu_processes_stay_in_sync(tmp_path):
    "2 processes, gloo on CPU: each trains on its shard, main (DDP) and critic (all-reduce) weights stay identical."
    (tmp_path / 'run.py').write_text(DDP_SCRIPT)
    (tmp_path / 'cfg.yaml').write_text(RunConfig.from_yaml(CONFIG).override(['train.epochs=1']).to_yaml())
    env = {**_env(), 'ACCELERATE_USE_CPU': '1'}
    # --standalone: a rendezvous on a free port of this machine, so runs never collide on a fixed port
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path / 'run.py'), str(tmp_path / 'cfg.yaml'), str(tmp_path / 'out')],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = load_state(tmp_path / 'out' / 'rank0.safetensors'), load_state(tmp_path / 'out' / 'rank1.safetensors')
    for k in w0: torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    assert len(read_csv(tmp_path / 'out' / 'steps.csv')) == 256 // 16 // 2  # each process did half the batches


def test_a_failed_checkpoint_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    "Out of disk space on a checkpoint write: training stops with the error, the previous checkpoint stays readable."
    import errno
    import gwae.learner as learner
    real, calls = learner.save_file, []
    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:  # the third state file: part of it written, then the disk is full
            open(filename, 'wb').write(b'partial')
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(tensors, filename, metadata=metadata)
    monkeypatch.setattr(learner, 'save_file', full_disk)
    cfg = RunConfig.from_yaml(CONFIG).override(['train.epochs=1'])
    with pytest.raises(OSError, match='No space left'): train(cfg, tmp_path / 'run', progress=False)
    ckpt = tmp_path / 'run' / 'checkpoint.safetensors'
    assert load_state(ckpt)['progress']['step'] == 6  # the second checkpoint (every 3 steps), intact
    assert not list((tmp_path / 'run').glob('*.tmp'))  # no partial file left
    monkeypatch.setattr(learner, 'save_file', real)
    resume(tmp_path / 'run', progress=False)  # and the run goes on from it
    assert learner.checkpoint_progress(tmp_path / 'run')['epoch'] == 1


def test_a_second_process_on_a_run_folder_is_refused(tmp_path):
    "While one process trains into a folder, another's train, resume or evaluate is refused; a killed writer frees it."
    slow = RunConfig.from_yaml(CONFIG).override(['model.sleep=0.05', 'train.epochs=3'])
    (tmp_path / 'slow.yaml').write_text(slow.to_yaml())
    folder = tmp_path / 'run'
    proc = subprocess.Popen([sys.executable, '-c', 'from gwae.cli import main; raise SystemExit(main())', 'train',
                             str(tmp_path / 'slow.yaml'), '--out', str(folder), '--quiet', '--no-evaluate'],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not (folder / 'weights_last.safetensors').exists():  # an epoch done: every file is there
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[0].decode()
            time.sleep(0.05)
        with pytest.raises(FileExistsError, match='in use by another process'): resume(folder, progress=False)
        with pytest.raises(FileExistsError, match='already holds a run'): train(slow, folder, progress=False)
        from gwae.runs import evaluate_run
        with pytest.raises(FileExistsError, match='in use by another process'): evaluate_run(folder)
        assert main(['resume', str(folder), '--quiet']) == 1
    finally:
        proc.kill(); proc.wait()
    resume(folder, epochs=1, progress=False)  # the killed writer's lock is gone with it


def test_tensorboard_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)  # as if tensorboard were missing
    cfg = RunConfig.from_yaml(CONFIG).override(['train.tensorboard=true', 'train.epochs=1'])
    with pytest.raises(ImportError, match=r'pip install "gwae\[tensorboard\]"'):
        train(cfg, tmp_path / 'run', progress=False)


def test_tensorboard_run_figures_per_epoch_and_resume_continues_the_log(tmp_path):
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = RunConfig.from_yaml(CONFIG).override(['train.tensorboard=true', 'train.epochs=1'])
    train(cfg, tmp_path / 'run', progress=False)
    resume(tmp_path / 'run', epochs=2, progress=False)
    events = EventAccumulator(str(tmp_path / 'run' / 'tensorboard'), size_guidance={'images': 0, 'scalars': 0}).Reload()
    figures = {'figures/reconstructions', 'figures/samples', 'figures/traversals', 'figures/distortion'}
    assert figures <= set(events.Tags()['images']), events.Tags()
    assert [e.step for e in events.Images('figures/traversals')] == [16, 32]
    steps = read_csv(tmp_path / 'run' / 'steps.csv')
    logged = events.Scalars('train_step/critic.gap')
    assert [e.step for e in logged] == [r['step'] for r in steps] == list(range(32))
    assert [e.value for e in logged] == pytest.approx([r['critic.gap'] for r in steps], rel=1e-5)
    # the figures leave the training's random numbers alone: the same weights as without TensorBoard
    train(RunConfig.from_yaml(CONFIG), tmp_path / 'plain', progress=False)
    for k, v in _weights(tmp_path / 'plain').items(): assert torch.equal(_weights(tmp_path / 'run')[k], v), k
