"Generated ground-truth datasets and the data loaders of `gwae.data`: ordering, factor semantics, errors."
import numpy as np
import pytest
import torch

from gwae.data import (DSprites, GroundTruthDataset, Shapes3D, convert_channels, get_dls, resize_images,
                       split_idxs)


@pytest.fixture(scope='module')
def dsprites(): return DSprites()

@pytest.fixture(scope='module')
def shapes3d(): return Shapes3D()


@pytest.mark.parametrize('cls,n,bases', [
    (DSprites, 737_280, [245760, 40960, 1024, 32, 1]),
    (Shapes3D, 480_000, [48000, 4800, 480, 60, 15, 1]),
])
def test_counts_and_official_ordering(cls, n, bases):
    ds = cls()
    assert len(ds) == n == int(np.prod(ds.factor_sizes))
    f = ds.sample_factors(1000, np.random.default_rng(0))
    np.testing.assert_array_equal(ds.factors_to_index(f), f @ np.array(bases))
    idx = np.random.default_rng(1).integers(0, n, 1000)
    np.testing.assert_array_equal(ds.factors_to_index(ds.index_to_factors(idx)), idx)
    np.testing.assert_array_equal(ds.index_to_factors([n - 1])[0], np.array(ds.factor_sizes) - 1)
    x, y = ds[n - 1]
    assert x.shape == ds.image_shape and x.dtype == torch.float32 and y.dtype == torch.int64
    assert ds.source == 'generated'


def test_factor_values_are_the_official_grids(dsprites, shapes3d):
    v = dsprites.factor_values
    np.testing.assert_allclose(v[0], [1, 2, 3]); np.testing.assert_allclose(v[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert v[2][0] == 0 and v[2][-1] == 2 * np.pi and np.allclose(np.diff(v[2]), 2 * np.pi / 39)
    np.testing.assert_allclose(v[3], np.arange(32) / 31)
    w = shapes3d.factor_values
    for k in range(3): np.testing.assert_allclose(w[k], np.arange(10) / 10)
    np.testing.assert_allclose(w[3], 0.75 + np.arange(8) / 14)
    np.testing.assert_allclose(w[5], -30 + 60 * np.arange(15) / 14)


@pytest.mark.parametrize('name', ['dsprites', 'shapes3d'])
def test_each_factor_changes_the_image_and_none_changes_nothing(name, request):
    ds = request.getfixturevalue(name)
    rng = np.random.default_rng(5)
    for base in ds.sample_factors(3, rng):
        img = ds.images_from_factors(base[None])
        torch.testing.assert_close(ds.images_from_factors(base[None]), img, rtol=0, atol=0)
        for k, size in enumerate(ds.factor_sizes):
            other = base.copy(); other[k] = (base[k] + 1) % size
            if name == 'dsprites' and k == 2 and {base[k], other[k]} == {0, 39}: continue  # the same angle
            assert (ds.images_from_factors(other[None]) - img).abs().max() > 0, (base, k)


def test_dsprites_orientation_0_and_2pi_identical(dsprites):
    f = dsprites.sample_factors(100, np.random.default_rng(2)); f[:, 2] = 0
    g = f.copy(); g[:, 2] = 39
    torch.testing.assert_close(dsprites.images_from_factors(f), dsprites.images_from_factors(g), rtol=0, atol=0)


def test_dsprites_geometry_matches_measured_areas(dsprites):
    rng = np.random.default_rng(3)
    x = dsprites.images_from_factors(dsprites.sample_factors(20, rng))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    for sh, area in enumerate([369, 297, 225]):
        f = dsprites.sample_factors(200, rng); f[:, 0], f[:, 1] = sh, 5
        assert abs(dsprites.images_from_factors(f).sum((1, 2, 3)).mean().item() - area) < 0.03 * area


def test_shapes3d_cache_matches_fresh_render(shapes3d):
    f = shapes3d.sample_factors(16, np.random.default_rng(4))
    torch.testing.assert_close(Shapes3D(cache=False).images_from_factors(f), shapes3d.images_from_factors(f))


def test_bad_input_errors(dsprites):
    with pytest.raises(ValueError, match=r'shape \(N, 5\)'): dsprites.images_from_factors(np.zeros((2, 4), int))
    with pytest.raises(ValueError, match='integer class indices'): dsprites.images_from_factors(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="'posY' is 32"): dsprites.check_factors([[0, 0, 0, 0, 32]])
    with pytest.raises(ValueError, match='out of range'): dsprites.check_factors([[-1, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match='index out of range'): dsprites.index_to_factors([len(dsprites)])
    with pytest.raises(IndexError): dsprites[len(dsprites)]
    with pytest.raises(ValueError, match='rng must be'): dsprites.sample_factors(3, None)
    with pytest.raises(NotImplementedError): GroundTruthDataset().images_from_factors(np.zeros((1, 0), int))
    with pytest.raises(ValueError, match='supersample'): DSprites(supersample=0)


def test_sampling_matches_disentanglement_lib_scheme(shapes3d):
    a = shapes3d.sample_factors(50, np.random.RandomState(7))
    rs = np.random.RandomState(7)
    b = np.stack([rs.randint(s, size=50) for s in shapes3d.factor_sizes], 1)
    np.testing.assert_array_equal(a, b)


def test_resize_and_channels():
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(resize_images(x, 32), torch.nn.functional.avg_pool2d(x, 2))
    assert resize_images(x, 28).shape == (3, 3, 28, 28)
    g = convert_channels(x, 1)
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert convert_channels(g, 3).shape == (3, 3, 64, 64)


def test_splits_and_loaders(dsprites):
    tr, va, te = split_idxs(737_280, (0.8, 0.1, 0.1), seed=0)
    assert len(np.unique(np.concatenate([tr, va, te]))) == 737_280 and abs(len(tr) - 0.8 * 737_280) <= 1
    dls = get_dls(dsprites, bs=8, splits=(tr, va, te), n_items=24, size=32, channels=3, seed=0)
    xb, yb = dls.train.one_batch()
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8, 5) and isinstance(dls.train.one_batch(), tuple)
    train_ids = set(tr.tolist())
    assert all(int(i) in train_ids for i in dsprites.factors_to_index(yb))
    xb2, yb2 = get_dls(dsprites, bs=8, splits=(tr, va, te), n_items=24, size=32, channels=3, seed=0).train.one_batch()
    torch.testing.assert_close(xb2, xb); torch.testing.assert_close(yb2, yb)
    assert [len(dl.dataset) for dl in dls.loaders] == [24, 24, 24]
