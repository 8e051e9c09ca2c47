"""The study runner: a tiny study (2 models × 2 seeds) run by Ray Tune on this machine, killed with SIGKILL while
its trials train, then resumed; the results table, mean ± std across seeds, and what is refused.

Robust on a loaded 2-core machine: Ray gets 2 CPUs, every wait has a generous deadline and polls the run folders
(no fixed sleeps, no fixed ports), the killed study's processes are all gone before the study resumes, and Ray is
shut down at the end of the module.
"""
import importlib.util, json, logging, math, os, shutil, signal, subprocess, sys, time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import ray
from ray import tune

from gwae.learner import checkpoint_progress, read_csv
from gwae.study import (StudyConfig, expand, final_metrics, mean_std, results_table, run_study,
                        study_dir, study_main, write_results)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
       'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
EPOCHS, STEPS_PER_EPOCH = 3, 8  # tiny_blobs: 256 training images in batches of 32
KILLED = dict(
    name='killed', grid={'train.seed': [0, 1]}, metrics=['valid_loss', 'psnr'],
    base=dict(imports=['gwae.test_utils'], model=dict(name='tiny_ae', sleep=0.05), data=dict(name='tiny_blobs'),
              train=dict(epochs=EPOCHS, batch_size=32, checkpoint_every=2)),
    variants=[dict(name='z2', set={'model.z_dim': 2}), dict(name='z3', set={'model.z_dim': 3})])
RUNS = ['z2-seed0', 'z2-seed1', 'z3-seed0', 'z3-seed1']
FILES = ('weights_best.safetensors', 'weights_last.safetensors', 'checkpoint.safetensors', 'history.csv',
         'metrics.json', 'study.json')

def step_of(folder):
    "Optimizer steps done at a run folder's checkpoint (None without one)."
    progress = checkpoint_progress(folder)
    return None if progress is None else progress['step']


@pytest.fixture(scope='module')
def ray_local():
    "One Ray on this machine for the module, with 2 CPUs; shut down afterwards."
    ray.init(address='local', num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()

def session_pids(sid:int)->list[int]:
    "Live processes of the session `sid` (Ray's workers leave the driver's process group, not its session)."
    pids = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: state, _, _, session = (d/'stat').read_text().rsplit(')', 1)[1].split()[:4]
        except (OSError, ValueError): continue
        if int(session) == sid and state != 'Z': pids.append(int(d.name))
    return pids

def kill_session(sid:int, timeout:float=120):
    "SIGKILL every process of the session, as a crash would, and wait until none is left."
    deadline = time.monotonic() + timeout
    while pids := session_pids(sid):
        for pid in pids:
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
        if time.monotonic() > deadline: raise TimeoutError(f"processes {pids} of the killed study outlived SIGKILL")
        time.sleep(0.2)

def stamps(folder:Path)->dict: return {f: (folder/f).stat().st_mtime_ns for f in FILES}

@pytest.fixture(scope='module')
def killed(tmp_path_factory, request):
    "The tiny study run by `gwae study run` in a subprocess, killed mid-training, then resumed here."
    if not sys.platform.startswith('linux'): pytest.skip('finds the killed processes in /proc')
    root = tmp_path_factory.mktemp('studies')
    cfg = StudyConfig.from_dict(dict(KILLED, root=str(root)))
    cfg.to_yaml(root/'killed.yaml')
    runs = study_dir(cfg)/'runs'
    code = f"import sys; from gwae.study import study_main; sys.exit(study_main([{str(root/'killed.yaml')!r}, '--num-cpus', '2']))"
    with open(root/'killed.log', 'w') as log:
        p = subprocess.Popen([sys.executable, '-c', code], cwd=root, env=ENV, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    request.getfixturevalue('ray_local')  # starts while the study's process starts
    try:  # wait until one run is finished while another is in its first half
        deadline = time.monotonic() + 400
        while not ([r for r in RUNS if final_metrics(runs/r)] and
                   [r for r in RUNS if 2 <= (step_of(runs/r) or 0) <= EPOCHS * STEPS_PER_EPOCH // 2]):
            assert p.poll() is None, f"the study ended before it was killed:\n{(root/'killed.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no moment to kill the study:\n{(root/'killed.log').read_text()[-3000:]}"
            time.sleep(0.05)
    finally:
        kill_session(p.pid); p.wait()
    finished = {r: stamps(runs/r) for r in RUNS if final_metrics(runs/r)}
    interrupted = {r: step_of(runs/r) for r in RUNS if step_of(runs/r) is not None and r not in finished}
    restorable = tune.Tuner.can_restore(str(study_dir(cfg)/'tune'/'trials'))
    res = run_study(cfg, verbose=0)
    return SimpleNamespace(cfg=cfg, runs=runs, finished=finished, interrupted=interrupted, restorable=restorable, res=res)

def test_killed_study_resumes_where_it_stopped(killed):
    seen = dict(finished=list(killed.finished), interrupted=killed.interrupted, tune=killed.res.tune,
                restorable=killed.restorable, failed=killed.res.failed)
    assert killed.finished and killed.interrupted and killed.res.failed == {}, seen
    assert all(final_metrics(killed.runs/r) for r in RUNS), seen
    for r, before in killed.finished.items(): assert stamps(killed.runs/r) == before, f"{r} was trained again"
    total = EPOCHS * STEPS_PER_EPOCH
    assert any(steps < total for steps in killed.interrupted.values()), seen  # one was killed mid-training
    for r, steps in killed.interrupted.items():  # continued from its checkpoint by gwae's resume, not started over
        attempts = [(a['how'], a['from_step']) for a in json.loads((killed.runs/r/'study.json').read_text())['attempts']]
        if steps < total: assert attempts == [('resumed', steps)], (r, attempts, seen)
        else: assert attempts[-1] == ('resumed', total), (r, attempts, seen)  # killed after training, evaluating
        assert [row['step'] for row in read_csv(killed.runs/r/'steps.csv')] == list(range(total)), (r, seen)
        assert [row['epoch'] for row in read_csv(killed.runs/r/'history.csv')] == list(range(EPOCHS)), (r, seen)
    assert killed.res.tune == ('restored' if killed.restorable else 'new'), seen

def test_results_table_and_mean_std(killed):
    table = killed.res.table
    assert list(table.columns[:10]) == ['study', 'run', 'model', 'setting', 'seed', 'data', 'data_source', 'evaluated', 'metric', 'value']
    assert {'python', 'torch', 'numpy', 'gwae', 'ray'} <= set(table.columns)
    assert len(table) == len(RUNS) * 2 and not table['value'].isna().any()
    assert sorted(table['run'].unique()) == RUNS and set(table['metric']) == {'valid_loss', 'psnr'}
    assert table.groupby('model')['seed'].apply(sorted).to_dict() == {'z2': [0, 0, 1, 1], 'z3': [0, 0, 1, 1]}
    summary = killed.res.summary.set_index(['model', 'metric'])
    for model in ('z2', 'z3'):  # against the metrics.json files themselves
        values = pd.Series([json.loads((killed.runs/f"{model}-seed{s}"/'metrics.json').read_text())['valid_loss']
                            for s in (0, 1)])
        row = summary.loc[(model, 'valid_loss')]
        assert math.isclose(row['mean'], values.mean()) and math.isclose(row['std'], values.std()) and row['n'] == 2
        assert row['mean ± std'] == mean_std(values.mean(), values.std())
    files = sorted(str(f.relative_to(killed.res.path)) for f in killed.res.files)
    assert files == ['figures/rank_correlation.png', 'figures/seed_spread.png', 'results.csv', 'summary.csv']
    assert pd.read_csv(killed.res.path/'results.csv')['value'].tolist() == pytest.approx(table['value'].tolist())

def test_finished_study_is_not_run_again_and_rebuilds_without_ray(killed, tmp_path, monkeypatch):
    before = {r: stamps(killed.runs/r) for r in RUNS}
    again = run_study(killed.cfg, verbose=0)
    assert again.tune == 'not needed' and {r: stamps(killed.runs/r) for r in RUNS} == before
    copy = shutil.copytree(study_dir(killed.cfg), tmp_path/'moved')  # the folder alone is enough
    monkeypatch.setitem(sys.modules, 'ray', None)
    pd.testing.assert_frame_equal(results_table(copy), killed.res.table)
    (copy/'runs'/RUNS[0]/'metrics.json').unlink()
    part = write_results(copy)
    assert part.unfinished == [RUNS[0]] and RUNS[0] not in set(part.table['run'])
    with pytest.raises(ImportError, match=r'pip install "gwae\[study\]"'): run_study(killed.cfg)

def test_refusals(killed, capsys):
    with pytest.raises(FileExistsError, match='already holds runs'): run_study(killed.cfg, resume=False, verbose=0)
    changed = killed.cfg.replace(base={**killed.cfg.base, 'train': dict(killed.cfg.base['train'], epochs=EPOCHS + 1)})
    with pytest.raises(ValueError, match=r'other settings \(train.epochs: 3 -> 4\)'): run_study(changed, verbose=0)
    assert study_main([str(killed.cfg.root) + '/killed.yaml', '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'z2' in out and 'valid_loss' in out and f"study folder: {killed.res.path}" in out

def test_run_whose_metrics_went_missing_is_completed_again(killed):
    "Tune's restored experiment has the run finished, its folder says otherwise: the folder wins."
    name = sorted(json.loads((study_dir(killed.cfg)/'tune'/'runs.json').read_text()))[0]
    (killed.runs/name/'metrics.json').unlink()
    weights = (killed.runs/name/'weights_best.safetensors').stat().st_mtime_ns
    res = run_study(killed.cfg, verbose=0)
    assert res.tune == 'restored' and res.failed == {} and res.unfinished == [], (res.tune, res.failed)
    attempts = [a['how'] for a in json.loads((killed.runs/name/'study.json').read_text())['attempts']]
    assert attempts[-1] == 'resumed' and final_metrics(killed.runs/name), attempts
    assert (killed.runs/name/'weights_best.safetensors').stat().st_mtime_ns == weights  # evaluated, not retrained

def test_failed_run_is_reported(tmp_path, ray_local, capsys):
    cfg = StudyConfig.from_dict(dict(name='failing', root=str(tmp_path), base=dict(KILLED['base'], model=dict(
        name='tiny_ae', nan_at_step=0), train=dict(epochs=1, batch_size=32))))
    cfg.to_yaml(tmp_path/'failing.yaml')
    assert study_main([str(tmp_path/'failing.yaml'), '--quiet']) == 1
    err = capsys.readouterr().err
    assert "run tiny_ae failed:" in err and "loss term 'kl' is nan" in err, err
    assert not final_metrics(tmp_path/'failing'/'runs'/'tiny_ae')

def test_import_without_ray(monkeypatch):
    "The module imports without Ray (executed afresh with `import ray` failing); running a study says what to install."
    monkeypatch.setitem(sys.modules, 'ray', None)
    spec = importlib.util.spec_from_file_location('gwae._study_without_ray', ROOT/'gwae'/'study.py')
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    with pytest.raises(ImportError, match=r'pip install "gwae\[study\]"'): module.run_study(module.StudyConfig())

def test_expansion_edge_cases(tmp_path):
    (tmp_path/'base.yaml').write_text("imports: [gwae.test_utils]\nmodel: {name: tiny_ae, z_dim: 3}\ndata: {name: tiny_blobs}\n")
    cfg = StudyConfig.from_dict(dict(base=str(tmp_path/'base.yaml'), grid={'model.nan_at_step': [-1, 5], 'data.n_train': [64]}))
    assert [r.name for r in expand(cfg)] == ['tiny_ae-nan_at_step-1-n_train64', 'tiny_ae-nan_at_step5-n_train64']
    assert [r.config.model['z_dim'] for r in expand(cfg)] == [3, 3]
    with pytest.raises(ValueError, match='share the folder names'): expand(cfg.replace(grid={'model.lr': [1, 1.0]}))
    with pytest.raises(FileNotFoundError, match='base config nowhere.yaml not found'): expand(cfg.replace(base='nowhere.yaml'))
    with pytest.raises(ValueError, match='each needs a name of its own'): cfg.replace(variants=[dict(name='a'), dict(name='a')])
    with pytest.raises(ValueError, match='folder name'): cfg.replace(name='../up')

def test_runs_that_cannot_fit_are_refused():
    "A run asking for more than the Ray started here has would wait forever: refused before Tune starts."
    from gwae.study import _check_resources
    here = SimpleNamespace(cluster_resources=lambda: {'CPU': 2.0})
    with pytest.raises(ValueError, match=r'each run asks for 1 GPUs \(gpus_per_trial\) and this machine has 0'):
        _check_resources(here, StudyConfig(gpus_per_trial=1))
    with pytest.raises(ValueError, match='asks for 4 CPUs'): _check_resources(here, StudyConfig(cpus_per_trial=4))
    _check_resources(here, StudyConfig(cpus_per_trial=2))
