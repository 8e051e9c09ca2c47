"Checks of gwae.boosting against scikit-learn's GradientBoostingClassifier: exact where no tie is broken, in distribution otherwise."
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.ensemble import GradientBoostingClassifier

from gwae.boosting import gradient_boosting
from gwae import metrics as M

PROPERTY = settings(max_examples=20, deadline=None, derandomize=True)


def noisy_problem(n, num_classes, seed=0, num_codes=5, noise=0.8):
    "Classes cut at quantiles from a noisy mix of the first two codes, and test codes."
    rng = np.random.RandomState(seed)
    x = rng.randn(n, num_codes)
    latent = x[:, 0] + 0.5 * x[:, 1] + noise * rng.randn(n)
    return x, np.digitize(latent, np.quantile(latent, np.linspace(0, 1, num_classes + 1)[1:-1])), rng.randn(200, num_codes)


CONFIGS = [  # (classes, n, stages, depth, learning rate, seed)
    (2, 1500, 10, 3, 0.1, 0), (2, 800, 30, 1, 0.3, 1), (3, 1500, 8, 2, 0.1, 2), (4, 2000, 20, 2, 0.1, 0),
    (5, 1500, 10, 2, 0.05, 0), (5, 3000, 5, 3, 0.1, 0), (6, 3000, 5, 2, 0.2, 3), (7, 4000, 4, 2, 0.1, 6)]


@pytest.mark.parametrize('num_classes,n,stages,depth,lr,seed', CONFIGS)
def test_equal_to_sklearn_without_ties(num_classes, n, stages, depth, lr, seed):
    "Where no split is a tie, importances equal sklearn's to rounding and every prediction is the same."
    x, y, xt = noisy_problem(n, num_classes, seed)
    ours = gradient_boosting(x, y, xt, n_estimators=stages, learning_rate=lr, max_depth=depth)
    ref = GradientBoostingClassifier(n_estimators=stages, learning_rate=lr, max_depth=depth, random_state=0).fit(x, y)
    assert ours.ties == 0, 'pick a configuration without ties for the exact comparison'
    np.testing.assert_allclose(ours.importances, ref.feature_importances_, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours.predictions, ref.predict(x))
    np.testing.assert_array_equal(ours.test_predictions, ref.predict(xt))


def test_wrong_leaf_factor_would_be_caught():
    "The exact comparison is sharp: sklearn with another learning rate (same trees at stage 1) already differs."
    x, y, xt = noisy_problem(1500, 5)
    ours = gradient_boosting(x, y, n_estimators=10, max_depth=2)
    ref = GradientBoostingClassifier(n_estimators=10, learning_rate=0.1 * 4 / 5, max_depth=2, random_state=0).fit(x, y)
    assert np.abs(ours.importances - ref.feature_importances_).max() > 1e-6


def test_with_ties_close_to_sklearn_and_its_seeds():
    "With ties (100 stages, many small nodes) the importances agree with sklearn's to about its own seed-to-seed spread."
    x, y, xt = noisy_problem(1500, 4, noise=0.5)
    ours = [gradient_boosting(x, y, xt, seed=s) for s in range(2)]
    refs = [GradientBoostingClassifier(random_state=s).fit(x, y) for s in range(2)]
    assert all(o.ties > 0 for o in ours)
    spread = np.abs(refs[0].feature_importances_ - refs[1].feature_importances_).max()
    for o in ours:
        assert np.abs(o.importances - refs[0].feature_importances_).max() <= max(5 * spread, 0.01)
        assert np.mean(o.test_predictions == refs[0].predict(xt)) >= 0.95


def test_exact_copies_share_importance():
    "Two identical codes: every split between them is a tie, so both get a share, as in sklearn."
    x, y, _ = noisy_problem(600, 3, num_codes=2)
    copies = np.hstack([x[:, :1], x[:, :1], x[:, 1:]])
    fit = gradient_boosting(copies, y, n_estimators=20)
    assert fit.ties > 0 and min(fit.importances[:2]) > 0.2


def test_seed_only_matters_through_ties():
    x, y, xt = noisy_problem(1500, 2)
    a, b = (gradient_boosting(x, y, xt, n_estimators=10, seed=s) for s in (0, 1))
    assert a.ties == b.ties == 0
    np.testing.assert_array_equal(a.importances, b.importances)
    x, y, xt = noisy_problem(600, 3, num_codes=2)
    copies = np.hstack([x[:, :1], x[:, :1], x[:, 1:]])
    c, d, e = (gradient_boosting(copies, y, n_estimators=20, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(c.importances, d.importances)
    assert not np.array_equal(c.importances, e.importances)


@PROPERTY
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2 ** 16), st.sampled_from([np.int64, np.int32, np.uint8]))
def test_properties(num_classes, num_codes, seed, dtype):
    "Importances are a distribution (or all zero); predictions are labels that occur; labels may be any integers."
    rng = np.random.RandomState(seed)
    x = rng.randn(60, num_codes).round(1) # ties in the values too
    labels = (rng.randint(num_classes, size=60) * 7 + 3).astype(dtype)
    if len(np.unique(labels)) < 2: labels[:2] = np.array([3, 10], dtype)
    fit = gradient_boosting(x, labels, x[:10], n_estimators=5)
    assert (fit.importances >= 0).all() and (abs(fit.importances.sum() - 1) < 1e-9 or fit.importances.sum() == 0)
    assert set(fit.predictions) <= set(labels) and set(fit.test_predictions) <= set(labels)
    assert fit.predictions.dtype == labels.dtype


def test_constant_codes_give_zero_importance():
    fit = gradient_boosting(np.ones((50, 3)), np.arange(50) % 2, n_estimators=3)
    assert fit.importances.sum() == 0 and fit.ties == 0


@pytest.mark.parametrize('args,match', [
    ((np.full((4, 2), np.nan), np.array([0, 1, 0, 1])), 'finite'),
    ((np.zeros(4), np.array([0, 1, 0, 1])), r'\(N, D\)'),
    ((np.zeros((4, 2)), np.array([0., 1, 0, 1])), 'integer'),
    ((np.zeros((4, 2)), np.array([0, 1, 0])), 'shape'),
    ((np.zeros((4, 2)), np.zeros(4, int)), 'single value'),
    ((np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((3, 3))), 'codes_test'),
    ((np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.full((3, 2), np.inf)), 'codes_test')])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match): gradient_boosting(*args)


def test_bad_settings():
    with pytest.raises(ValueError, match='max_depth'): gradient_boosting(np.zeros((4, 2)), np.array([0, 1, 0, 1]), max_depth=0)


def test_fast_dci_matches_default_dci():
    "The 'fast' DCI estimator against dlib's default on a small dSprites-like problem (with ties at 100 stages)."
    rng = np.random.RandomState(0)
    sizes = np.array([3, 6, 8])
    def sample(n):
        f = np.stack([rng.randint(s, size=n) for s in sizes], 1)
        z = np.hstack([(f + 0.5) / sizes + 0.05 * rng.randn(n, 3), rng.randn(n, 1)])
        z[:, 1] += 0.5 * z[:, 2]
        return z, f
    (x, f), (xt, ft) = sample(1000), sample(500)
    gbt, fast = M.dci(x, f, xt, ft, 'gbt'), M.dci(x, f, xt, ft, 'fast')
    for key in ('disentanglement', 'completeness'): assert abs(gbt[key] - fast[key]) < 0.01, (key, gbt, fast)
    assert abs(gbt['informativeness_test'] - fast['informativeness_test']) < 0.02
