"Generated ground-truth datasets and the data loaders of `gwae.data`: ordering, factor semantics, errors."
import numpy as np
import pytest
import torch

from gwae.dsprites import DSprites
from gwae.data import GroundTruthDataset, ImageTransform, get_dls, resize_images, split_idxs, traversal_factors, traversal_grid
from gwae.shapes3d import Shapes3D


@pytest.fixture(scope='module')
def dsprites(): return DSprites()

@pytest.fixture(scope='module')
def shapes3d(): return Shapes3D()


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


def test_resize_sizes_and_numpy_integers():
    x = torch.rand(3, 3, 64, 48)
    assert resize_images(x, (32, 24)).shape == (3, 3, 32, 24)  # non-square shrink by area: 2x2 block means
    torch.testing.assert_close(resize_images(x, (32, 24)), torch.nn.functional.avg_pool2d(x, 2))
    assert resize_images(x, np.int64(16)).shape == (3, 3, 16, 16)
    up = resize_images(x, (80, 50))  # enlarging one side only is bilinear and stays in the input's range
    assert up.shape == (3, 3, 80, 50) and x.min() <= up.min() and up.max() <= x.max()
    xb, _ = ImageTransform(np.int64(32), np.int64(1))((torch.full((2, 3, 64, 64), 51, dtype=torch.uint8), None))
    torch.testing.assert_close(xb, torch.full((2, 1, 32, 32), 0.2))
    for bad in (0, -3, 2.5, (4,), (4, 0), 'a'):
        with pytest.raises(ValueError, match='size must be'): resize_images(x, bad)


def test_traversal_rows_change_one_factor_each(shapes3d):
    base = shapes3d.sample_factors(1, 9)[0]
    rows = traversal_factors(shapes3d, base, n=6)
    assert [len(r) for r in rows] == [6, 6, 6, 6, 4, 6]
    for k, r in enumerate(rows):
        assert (np.delete(r, k, 1) == np.delete(base, k)).all()
        assert len(np.unique(r[:, k])) == len(r) and r[0, k] == 0 and r[-1, k] == shapes3d.factor_sizes[k] - 1
    np.testing.assert_array_equal(np.concatenate(traversal_factors(shapes3d, None, seed=4)),
                                  np.concatenate(traversal_factors(shapes3d, None, seed=4)))
    with pytest.raises(ValueError, match='n must be'): traversal_factors(shapes3d, base, n=0)
    with pytest.raises(ValueError, match='out of range'): traversal_factors(shapes3d, [0, 0, 0, 0, 4, 0])
    fig = traversal_grid(DSprites(), n=3, scale=0.3)
    assert len(fig.axes) == 5 * 3 and fig.get_figwidth() < 3


def test_shapes3d_prefill_caches_every_combination():
    s = Shapes3D()
    assert s.cached == 0
    f = s.sample_factors(4, np.random.default_rng(8))
    s.images_from_factors(f)
    assert 1 <= s.cached <= 4
    assert s.prefill() is s and s.cached == 480
    torch.testing.assert_close(s.images_from_factors(f), Shapes3D(cache=False).images_from_factors(f))
    with pytest.raises(ValueError, match='cache=True'): Shapes3D(cache=False).prefill()


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
