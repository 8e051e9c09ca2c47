"Checks of gwae.metrics: dlib's golden values, independent references, invariances (hypothesis), determinism, bad input."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.linear_model import LogisticRegression

from gwae import metrics as M

FAST = settings(max_examples=15, deadline=None, derandomize=True)
SLOW = settings(max_examples=4, deadline=None, derandomize=True)


def identity_factors(n, num_factors=10, size=10, seed=0):
    "dlib's IdentityObservationsData: factors uniform in 1..size, observation = factors."
    return np.random.RandomState(seed).randint(1, size + 1, size=(n, num_factors))


class IdentityData:
    "Ground-truth stand-in whose images are the factor classes, shaped (N, K, 1, 1)."
    def __init__(self, factor_sizes=(10,) * 10): self.factor_sizes = tuple(factor_sizes)
    def sample_factors(self, n, rng): return np.stack([rng.randint(s, size=n) for s in self.factor_sizes], 1)
    def images_from_factors(self, classes): return torch.as_tensor(np.asarray(classes), dtype=torch.float32)[:, :, None, None]


def identity(images): return images.flatten(1)


# ---------------------------------------------------------------- closed forms (exact, dlib's *_test.py)

@pytest.mark.parametrize('matrix,d,c', [
    (np.diag(np.arange(1., 6)), 1., 1.),
    (np.zeros((5, 5)), 0., 0.),
    (np.vstack([np.eye(5), np.eye(5)]), 1., 1 - np.log(2) / np.log(10)),
    (np.hstack([np.eye(5), np.eye(5)]), 1 - np.log(2) / np.log(10), 1.),
    (np.array([[1., 0], [0, 1], [0, 0]]), 1., 1.)])
def test_dci_closed_form(matrix, d, c):
    np.testing.assert_allclose([M.dci_disentanglement(matrix), M.dci_completeness(matrix)], [d, c], atol=1e-7)


@pytest.mark.parametrize('mi,expected', [
    (np.diag([1., 2, 3]), 1.), (np.array([[1., 0], [0, 1], [0, 0]]), 2 / 3), (np.zeros((3, 3)), 0.),
    (np.vstack([np.eye(10), np.eye(10)]), 1.), (np.hstack([np.eye(5), np.eye(5)]), 1 - 1 / 9)])
def test_modularity_closed_form(mi, expected):
    np.testing.assert_allclose(M.modularity_from_mi(mi), expected, atol=1e-12)


def test_gaussian_scores_closed_form():
    c = np.array([[1., .9], [.9, 1.]])
    d = np.diag(np.diag(c))
    kl = 0.5 * (np.trace(np.linalg.inv(d) @ c) - 2 + np.log(np.linalg.det(d) / np.linalg.det(c)))
    assert abs(M.gaussian_total_correlation(np.eye(3))) < 1e-12
    np.testing.assert_allclose(M.gaussian_total_correlation(c), kl)
    w, v = np.linalg.eigh(c)
    np.testing.assert_allclose(M.gaussian_wasserstein_correlation(c), 2 * np.trace(c) - 2 * np.sqrt(w).sum())


# ---------------------------------------------------------------- golden ranges (dlib's sampled tests, smaller)

def test_mig_golden():
    f = identity_factors(3000)
    x = f.astype(float)
    assert 0.9 <= M.mig(x, f)['discrete_mig'] <= 1
    assert 0 <= M.mig(0 * x, f)['discrete_mig'] <= 0.2
    assert 0 <= M.mig(np.hstack([x, x]), f)['discrete_mig'] <= 0.1


def test_sap_golden():
    f, ft = identity_factors(3000), identity_factors(3000, seed=1)
    x, xt = f.astype(float), ft.astype(float)
    s = lambda a, b: M.sap(a, f, b, ft, continuous_factors=True)['SAP_score']
    assert 0.9 <= s(x, xt) <= 1 and 0 <= s(0 * x, 0 * xt) <= 0.2 and 0 <= s(np.hstack([x, x]), np.hstack([xt, xt])) <= 0.2


def test_modularity_explicitness_golden():
    f = identity_factors(3000)
    for codes in (f * 1., np.hstack([f, f]) * 1.): assert M.modularity_explicitness(codes, f)['modularity_score'] >= 0.9
    zeros = M.modularity_explicitness(0. * f, f)
    assert zeros['modularity_score'] == 0 and abs(zeros['explicitness_score_test'] - 0.5) < 1e-9


def test_irs_golden():
    f = identity_factors(3000)
    assert M.irs(f * 1., f)['IRS'] >= 0.9
    assert M.irs(0. * f, f) == {'IRS': 0., 'num_active_dims': 0}


@pytest.mark.parametrize('estimator', ['gbt', 'fast', 'gwae'])
def test_dci_golden(estimator):
    f, ft = identity_factors(300, 3, 6), identity_factors(300, 3, 6, seed=1)
    ident = M.dci(f * 1., f, ft * 1., ft, estimator)
    rng = np.random.RandomState(1)
    perm = lambda a: np.stack([rng.permutation(r) for r in a]).astype(float)
    mixed = M.dci(perm(f), f, perm(ft), ft, estimator)
    assert min(ident['disentanglement'], ident['completeness']) >= 0.9
    assert max(mixed['disentanglement'], mixed['completeness']) <= 0.2


def test_dci_parallel_identical():
    f, ft = identity_factors(120, 2, 3), identity_factors(120, 2, 3, seed=1)
    x = f + 0.3 * np.random.RandomState(0).randn(*f.shape)
    xt = ft + 0.3 * np.random.RandomState(1).randn(*ft.shape)
    assert M.dci(x, f, xt, ft, n_jobs=1) == M.dci(x, f, xt, ft, n_jobs=2)


def test_unsupervised_golden():
    c = np.array([[1., .9], [.9, 1.]])
    z = np.random.RandomState(0).multivariate_normal([0, 0], c, size=20000)
    kl = 0.5 * np.log(1 / np.linalg.det(c))
    assert abs(M.unsupervised_scores(z)['gaussian_total_correlation'] - kl) < 0.03
    assert abs(M.unsupervised_scores(np.random.RandomState(0).randn(20000, 3))['gaussian_total_correlation']) < 0.01


# ---------------------------------------------------------------- independent references

def plugin_mi(a, b):
    "Plug-in mutual information from joint counts, written without sklearn."
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1)
    p = joint / joint.sum()
    pa, pb = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log(p[nz] / (pa @ pb)[nz])).sum())


def test_mig_matches_reference():
    rng = np.random.RandomState(0)
    f = rng.randint(4, size=(500, 3))
    x = f[:, [0, 1, 2, 0]] + rng.randn(500, 4) * [0.3, 1, 3, 1]
    edges = [np.linspace(c.min(), c.max(), 21) for c in x.T]
    disc = np.stack([np.clip(np.searchsorted(e, c, side='right'), 1, 20) for e, c in zip(edges, x.T)], 1)
    np.testing.assert_array_equal(M.histogram_discretize(x), disc)
    m = np.array([[plugin_mi(disc[:, j], f[:, k]) for k in range(3)] for j in range(4)])
    s = np.sort(m, 0)
    expected = np.mean((s[-1] - s[-2]) / np.array([plugin_mi(c, c) for c in f.T]))
    np.testing.assert_allclose(M.mig(x, f)['discrete_mig'], expected, rtol=1e-10)


def test_sampling_entropy_of_gaussian():
    "All posteriors N(0, 1): the aggregate is N(0, 1), entropy 0.5 log(2 pi e) per dimension."
    h = M._gaussian_entropies(np.zeros((300, 2)), np.zeros((300, 2)), np.random.default_rng(0), 3000)
    np.testing.assert_allclose(h, 0.5 * np.log(2 * np.pi * np.e), atol=0.05)


def test_sampling_mig_identity_vs_mixed():
    f = identity_factors(600, 3, 5)
    lv = np.full(f.shape, np.log(0.05 ** 2))
    good = M.mig(f * 1., f, 'sampling', logvar=lv, num_samples=300)['sampling_mig']
    mixed = M.mig(f @ np.ones((3, 3)) / 3 * 1., f, 'sampling', logvar=lv, num_samples=300)['sampling_mig']
    assert good > 0.9 and mixed < 0.1


def dlib_beta_vae(data, rep, rs, batch_size, num_train, num_eval):
    "dlib's beta_vae.py, point by point."
    def points(n):
        x, y = np.zeros((n, 10)), np.zeros(n, np.int64)
        for i in range(n):
            k = rs.randint(len(data.factor_sizes))
            f1, f2 = data.sample_factors(batch_size, rs), data.sample_factors(batch_size, rs)
            f2[:, k] = f1[:, k]
            y[i], x[i] = k, np.mean(np.abs(rep(data.images_from_factors(f1)).numpy() - rep(data.images_from_factors(f2)).numpy()), 0)
        return x, y
    x, y = points(num_train)
    model = LogisticRegression().fit(x, y)
    xe, ye = points(num_eval)
    return {'train_accuracy': float(np.mean(model.predict(x) == y)), 'eval_accuracy': float(model.score(xe, ye))}


def dlib_factor_vae(data, rep, rs, batch_size, num_train, num_eval, num_var, threshold):
    "dlib's factor_vae.py, point by point."
    enc = lambda f: rep(data.images_from_factors(f)).numpy().astype(np.float64)
    gv = np.var(enc(data.sample_factors(num_var, rs)), axis=0, ddof=1)
    active = np.sqrt(gv) >= threshold
    def votes(n):
        v = np.zeros((len(data.factor_sizes), len(gv)), np.int64)
        for _ in range(n):
            k = rs.randint(len(data.factor_sizes))
            f = data.sample_factors(batch_size, rs)
            f[:, k] = f[0, k]
            v[k, np.argmin(np.var(enc(f), axis=0, ddof=1)[active] / gv[active])] += 1
        return v
    tr = votes(num_train); cls = np.argmax(tr, 0); cols = np.arange(tr.shape[1])
    ev = votes(num_eval)
    return {'train_accuracy': tr[cls, cols].sum() / tr.sum(), 'eval_accuracy': ev[cls, cols].sum() / ev.sum()}


def noisy_rep(images):
    "A deterministic, imperfect representation: factors mixed by a fixed matrix plus a fixed nonlinearity."
    f = images.flatten(1).double()
    w = torch.as_tensor(np.random.RandomState(0).randn(10, 10) * 0.3 + np.eye(10))
    return torch.sin(f @ w) + 0.1 * f


def test_beta_vae_matches_dlib_loop():
    data = IdentityData()
    ours = M.beta_vae_score(data, noisy_rep, batch_size=4, num_train=200, num_eval=100, seed=3)
    ref = dlib_beta_vae(data, noisy_rep, np.random.RandomState(3), 4, 200, 100)
    assert ours == pytest.approx(ref, abs=1e-12)


def test_factor_vae_matches_dlib_loop():
    data = IdentityData()
    ours = M.factor_vae_score(data, noisy_rep, batch_size=4, num_train=300, num_eval=200, num_variance_estimate=400, seed=5)
    ref = dlib_factor_vae(data, noisy_rep, np.random.RandomState(5), 4, 300, 200, 400, 0.05)
    assert {k: ours[k] for k in ref} == pytest.approx(ref, abs=1e-12)


def test_intervention_scores_golden():
    data = IdentityData()
    bv = M.beta_vae_score(data, identity, batch_size=5, num_train=2000, num_eval=2000)
    fv = M.factor_vae_score(data, identity, batch_size=5, num_train=3000, num_eval=2000, num_variance_estimate=2500)
    fz = M.factor_vae_score(data, lambda x: torch.zeros(len(x), 10), batch_size=5, num_train=300, num_eval=200, num_variance_estimate=250)
    assert min(bv.values()) >= 0.9 and min(fv['train_accuracy'], fv['eval_accuracy']) >= 0.9
    assert fz['eval_accuracy'] == 0 and fz['num_active_dims'] == 0


def test_factor_vae_prunes_quiet_dims():
    "A code with standard deviation below 0.05 can never be voted for."
    data = IdentityData((5, 5))
    rep = lambda x: torch.cat([x.flatten(1), 0.001 * x.flatten(1)[:, :1]], 1)
    out = M.factor_vae_score(data, rep, batch_size=8, num_train=200, num_eval=100, num_variance_estimate=300)
    assert out['num_active_dims'] == 2 and out['eval_accuracy'] > 0.9


# ---------------------------------------------------------------- properties (hypothesis)

@st.composite
def codes_and_factors(draw, min_n=60, max_n=150):
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(2, 5))
    k = draw(st.integers(2, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.RandomState(seed)
    sizes = draw(st.lists(st.integers(2, 5), min_size=k, max_size=k))
    f = np.stack([rng.randint(s, size=n) for s in sizes], 1)
    f[:2] = [[0] * k, [1] * k]  # every factor varies
    mix = rng.randn(k, d) * draw(st.floats(0, 2))
    x = f @ mix + rng.randn(n, d)
    return x, f


SCALES = st.lists(st.sampled_from([0.125, 0.25, 0.5, 2., 4., 8.]), min_size=5, max_size=5)


@FAST
@given(codes_and_factors())
def test_scores_in_range(data):
    x, f = data
    assert 0 <= M.mig(x, f)['discrete_mig'] <= 1
    me = M.modularity_explicitness(x, f)
    assert 0 <= me['modularity_score'] <= 1 and 0 <= me['explicitness_score_train'] <= 1
    assert 0 <= M.sap(x, f, continuous_factors=True)['SAP_score'] <= 1
    assert M.irs(x, f)['IRS'] <= 1
    u = M.unsupervised_scores(x)
    assert u['gaussian_total_correlation'] >= -1e-9 and u['gaussian_wasserstein_correlation'] >= -1e-9 and u['mutual_info_score'] >= 0


@SLOW
@given(codes_and_factors(), st.sampled_from(['fast', 'gwae']))
def test_dci_in_range_and_deterministic(data, estimator):
    x, f = data
    a = M.dci(x, f, estimator=estimator, seed=1)
    assert all(-1e-9 <= v <= 1 + 1e-9 for v in a.values())
    assert M.dci(x, f, estimator=estimator, seed=1) == a


@FAST
@given(codes_and_factors(), st.randoms(use_true_random=False))
def test_permutation_invariance(data, rnd):
    x, f = data
    perm = list(range(x.shape[1])); rnd.shuffle(perm)
    xp = x[:, perm]
    assert M.mig(xp, f) == M.mig(x, f)
    assert M.modularity_explicitness(xp, f)['modularity_score'] == pytest.approx(M.modularity_explicitness(x, f)['modularity_score'], abs=1e-12)
    assert M.sap(xp, f, continuous_factors=True) == pytest.approx(M.sap(x, f, continuous_factors=True), abs=1e-12)
    assert M.irs(xp, f) == pytest.approx(M.irs(x, f), abs=1e-12)
    assert M.unsupervised_scores(xp) == pytest.approx(M.unsupervised_scores(x), abs=1e-8)


@FAST
@given(codes_and_factors(), SCALES)
def test_rescaling_invariance(data, scales):
    "Per-dimension positive rescaling (powers of two, so the float arithmetic is exact) leaves these scores unchanged."
    x, f = data
    xs = x * np.array(scales[:x.shape[1]])
    assert M.mig(xs, f) == M.mig(x, f)
    assert M.modularity_explicitness(xs, f) == pytest.approx(M.modularity_explicitness(x, f), abs=1e-9)
    assert M.sap(xs, f, continuous_factors=True) == pytest.approx(M.sap(x, f, continuous_factors=True), abs=1e-9)
    # IRS weights codes by their spread, so only a common rescaling of all codes leaves it unchanged
    assert M.irs(x * scales[0], f) == pytest.approx(M.irs(x, f), abs=1e-9)
    u, us = M.unsupervised_scores(x), M.unsupervised_scores(xs)
    assert us['gaussian_total_correlation'] == pytest.approx(u['gaussian_total_correlation'], abs=1e-8)
    assert us['mutual_info_score'] == pytest.approx(u['mutual_info_score'], abs=1e-12)


@SLOW
@given(codes_and_factors(), SCALES)
def test_fast_dci_rescaling_invariance(data, scales):
    x, f = data
    xs = x * np.array(scales[:x.shape[1]])
    assert M.dci(xs, f, estimator='fast') == pytest.approx(M.dci(x, f, estimator='fast'), abs=1e-9)


@SLOW
@given(codes_and_factors())
def test_seeded_metrics_deterministic(data):
    x, f = data
    assert M.sap(x, f, seed=2) == M.sap(x, f, seed=2)
    lv = np.zeros_like(x)
    a = M.mig(x, f, 'sampling', logvar=lv, num_samples=50, seed=4)
    assert M.mig(x, f, 'sampling', logvar=lv, num_samples=50, seed=4) == a
    assert M.mig(x, f, 'sampling', logvar=lv, num_samples=50, seed=5) != a


# ---------------------------------------------------------------- bad input

def test_bad_input():
    f = identity_factors(100, 3)
    x = f * 1.
    with pytest.raises(ValueError, match='NaN or infinite'): M.mig(np.where(f == 1, np.nan, x), f)
    with pytest.raises(ValueError, match='integer class indices'): M.dci(x, f * 1.)
    with pytest.raises(ValueError, match='single value'): M.sap(x, f * [1, 0, 1])
    with pytest.raises(ValueError, match='2-D'): M.irs(x[:, 0], f)
    with pytest.raises(ValueError, match='rows'): M.modularity_explicitness(x, f[:50])
    with pytest.raises(ValueError, match='pass both'): M.dci(x, f, x)
    with pytest.raises(ValueError, match='shapes disagree'): M.sap(x, f, x[:, :2], f)
    with pytest.raises(ValueError, match="estimator must be"): M.dci(x, f, estimator='xgb')
    with pytest.raises(ValueError, match="estimator must be"): M.mig(x, f, estimator='kde')
    with pytest.raises(ValueError, match='logvar'): M.mig(x, f, 'sampling', logvar=np.zeros((3, 3)))
    with pytest.raises(ValueError, match='at least 2 code dimensions'): M.mig(x[:, :1], f)
    with pytest.raises(ValueError, match='at least 2 of each'): M.modularity_explicitness(x, f[:, :1])
    with pytest.raises(ValueError, match='represent must return'):
        M.beta_vae_score(IdentityData(), lambda im: im.flatten(), batch_size=2, num_train=3, num_eval=3)


def test_tensor_input_and_single_pair_split():
    f = identity_factors(200, 3)
    x = torch.as_tensor(f, dtype=torch.float32)
    x_tr, f_tr, x_te, f_te = M.split_train_test(f * 1., f)
    assert len(x_tr) == 180 and len(x_te) == 20
    assert M.sap(x, f) == M.sap(x_tr, f_tr, x_te, f_te)
