"""Tests for widessl.data: loaders (embedded, IDX, npz), augmentations, positive pairs."""

from __future__ import annotations

import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import widessl  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from widessl.data import Augmentation, Dataset, PairData, load_mnist, make_pairs, unit_normalize
from widessl.errors import ConfigError, DataError


# --------------------------------------------------------------------------- helpers


def write_idx_images(path: Path, images: np.ndarray, gz: bool = False, magic: int = 0x803) -> Path:
    n, r, c = images.shape
    data = magic.to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, r, c))
    data += images.astype(np.uint8).tobytes()
    return _write(path, data, gz)


def write_idx_labels(path: Path, labels: np.ndarray, gz: bool = False, magic: int = 0x801) -> Path:
    data = magic.to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()
    return _write(path, data, gz)


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def write_split(directory: Path, prefix: str, n: int, seed: int, gz: bool):
    x, y = synthetic(n, seed)
    write_idx_images(directory / f"{prefix}-images-idx3-ubyte", x, gz)
    write_idx_labels(directory / f"{prefix}-labels-idx1-ubyte", y, gz)
    return x, y


@pytest.fixture(scope="module")
def embedded() -> Dataset:
    return load_mnist()


# --------------------------------------------------------------------------- embedded


def test_embedded_loader(embedded):
    assert embedded.images.shape == (5000, 28, 28)
    assert embedded.images.dtype == np.float64 and embedded.labels.dtype == np.int64
    assert embedded.images.min() == 0.0 and embedded.images.max() == 1.0
    assert np.bincount(embedded.labels).tolist() == [500] * 10
    assert embedded.name == "mnist-embedded"
    assert len(load_mnist(split="all")) == 5000


def test_embedded_has_no_test_split():
    with pytest.raises(ConfigError, match="no test split.*path"):
        load_mnist(split="test")


def test_bad_split_and_source():
    with pytest.raises(ConfigError, match="split must be one of"):
        load_mnist(split="validation")
    with pytest.raises(DataError, match="does not exist"):
        load_mnist("/nonexistent/widessl/mnist")


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_torchvision_layout(tmp_path, gz):
    raw = tmp_path / "MNIST" / "raw"
    xtr, ytr = write_split(raw, "train", 7, 1, gz)
    xte, yte = write_split(raw, "t10k", 3, 2, gz)
    ds = load_mnist(tmp_path)
    np.testing.assert_array_equal(ds.images, xtr / 255.0)
    np.testing.assert_array_equal(ds.labels, ytr)
    test = load_mnist(tmp_path, split="test")
    np.testing.assert_array_equal(test.images, xte / 255.0)
    np.testing.assert_array_equal(test.labels, yte)
    both = load_mnist(str(tmp_path), split="all")
    np.testing.assert_array_equal(both.images, np.concatenate([xtr, xte]) / 255.0)
    np.testing.assert_array_equal(both.labels, np.concatenate([ytr, yte]))


def test_idx_flat_layout_and_single_file(tmp_path):
    # Debian's dataset-fashion-mnist: gzipped files directly in the directory.
    xtr, ytr = write_split(tmp_path, "train", 5, 3, gz=True)
    ds = load_mnist(tmp_path)
    np.testing.assert_array_equal(ds.images, xtr / 255.0)
    np.testing.assert_array_equal(ds.labels, ytr)
    one = load_mnist(tmp_path / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(one.images, xtr / 255.0)
    np.testing.assert_array_equal(one.labels, ytr)


def test_idx_wrong_magic(tmp_path):
    x, y = synthetic(4, 0)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", x, magic=0x801)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", y)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*expected 0x00000803, found 0x00000801"):
        load_mnist(tmp_path)


def test_idx_truncated(tmp_path):
    x, y = synthetic(4, 0)
    path = write_idx_images(tmp_path / "train-images-idx3-ubyte", x)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", y)
    full = path.read_bytes()
    path.write_bytes(full[:-100])
    with pytest.raises(DataError, match=rf"truncated.*need {len(full)} bytes, found {len(full) - 100}"):
        load_mnist(tmp_path)


def test_idx_count_mismatch(tmp_path):
    x, y = synthetic(4, 0)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", x)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", y[:3])
    with pytest.raises(DataError, match="count mismatch.*4 images.*3 labels"):
        load_mnist(tmp_path)


def test_idx_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"tried:(.|\n)*MNIST/raw/train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path)
    x, _ = synthetic(2, 0)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", x)
    with pytest.raises(DataError, match="no labels file"):
        load_mnist(tmp_path)
    with pytest.raises(DataError, match="no labels file"):
        load_mnist(tmp_path / "train-images-idx3-ubyte")


def test_idx_corrupt_gzip(tmp_path):
    x, y = synthetic(4, 0)
    path = write_idx_images(tmp_path / "train-images-idx3-ubyte", x, gz=True)
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", y, gz=True)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*not a valid gzip"):
        load_mnist(tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not gzip data"):
        load_mnist(tmp_path)


def test_idx_wrong_image_size(tmp_path):
    rng = np.random.default_rng(0)
    write_idx_images(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (3, 32, 32)))
    write_idx_labels(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(DataError, match="32x32, expected 28x28"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------- npz


def test_npz(tmp_path):
    xtr, ytr = synthetic(6, 4)
    xte, yte = synthetic(2, 5)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte.reshape(2, 784), y_test=yte)
    ds = load_mnist(path)
    np.testing.assert_array_equal(ds.images, xtr / 255.0)
    np.testing.assert_array_equal(ds.labels, ytr)
    test = load_mnist(path, "test")  # stored flat [n, 784]
    np.testing.assert_array_equal(test.images, xte / 255.0)
    both = load_mnist(path, "all")
    assert both.images.shape == (8, 28, 28)
    np.testing.assert_array_equal(both.labels, np.concatenate([ytr, yte]))


def test_npz_bad(tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (3, 28, 28))
    x[1, 2, 3] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=x, y_train=np.arange(3))
    with pytest.raises(DataError, match=r"x_train.*NaN or inf"):
        load_mnist(path)
    path = tmp_path / "keys.npz"
    np.savez(path, images=x)
    with pytest.raises(DataError, match="expected keys x_train.*found \\['images'\\]"):
        load_mnist(path)
    path = tmp_path / "shape.npz"
    np.savez(path, x_train=np.zeros((3, 10, 10), np.uint8), y_train=np.arange(3))
    with pytest.raises(DataError, match=r"\[n, 28, 28\] or \[n, 784\]"):
        load_mnist(path)
    path = tmp_path / "broken.npz"
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_mnist(path)


def test_dataset_validation():
    with pytest.raises(DataError, match="NaN or inf"):
        Dataset(np.full((2, 28, 28), np.nan), np.zeros(2, int), "x")
    with pytest.raises(DataError, match="labels must have shape"):
        Dataset(np.zeros((2, 28, 28)), np.zeros(3, int), "x")
    with pytest.raises(DataError, match=r"\[n, rows, cols\]"):
        Dataset(np.zeros((2, 784)), np.zeros(2, int), "x")


# --------------------------------------------------------------------------- unit_normalize


def test_unit_normalize():
    x = np.random.default_rng(0).normal(size=(20, 28, 28))
    u = unit_normalize(x)
    assert u.shape == (20, 784) and u.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(u * np.linalg.norm(x.reshape(20, -1), axis=1)[:, None], x.reshape(20, -1))
    assert unit_normalize(np.zeros((0, 28, 28))).shape == (0, 784)
    x[7] = 0
    with pytest.raises(DataError, match="row 7 has zero norm.*all-zero image"):
        unit_normalize(x)
    x[7, 0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or inf"):
        unit_normalize(x)


# --------------------------------------------------------------------------- augmentation


def test_augmentation_identity(embedded):
    aug = Augmentation.none()
    assert aug.identity and not Augmentation().identity
    x = embedded.images[:10]
    np.testing.assert_array_equal(aug(x, np.random.default_rng(0)), x)


def test_augmentation_validation():
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="noise_std"):
            Augmentation(noise_std=bad)
    with pytest.raises(ConfigError, match="rotation_deg"):
        Augmentation(rotation_deg="10")
    with pytest.raises(DataError, match=r"\[n, rows, cols\]"):
        Augmentation()(np.zeros((2, 784)), np.random.default_rng(0))


def test_augmentation_noise_std(embedded):
    x = embedded.images[:200]
    y = Augmentation(rotation_deg=0, shift_px=0, noise_std=0.1)(x, np.random.default_rng(1))
    noise = (y - x).ravel()  # 156,800 draws: std error of the std ~ 2e-4
    assert abs(noise.mean()) < 2e-3
    assert abs(noise.std() - 0.1) < 1.5e-3


def test_rotation_keeps_centre_distance():
    # A blob off centre: rotation about the centre moves it on a circle.
    rows, cols = np.indices((28, 28))
    x = np.exp(-((rows - 13.5) ** 2 + (cols - 20.0) ** 2) / 2.0)[None].repeat(50, axis=0)
    y = Augmentation(rotation_deg=45, shift_px=0, noise_std=0)(x, np.random.default_rng(2))

    def com(img):
        return np.array([(img * rows).sum(), (img * cols).sum()]) / img.sum()

    radii = np.array([np.linalg.norm(com(img) - 13.5) for img in y])
    np.testing.assert_allclose(radii, 6.5, atol=0.1)
    angles = [math.degrees(math.atan2(-(c[0] - 13.5), c[1] - 13.5)) for c in map(com, y)]
    assert max(np.abs(angles)) <= 45.5 and np.std(angles) > 10  # spread over the range


def test_shift_moves_centre_of_mass():
    rows, cols = np.indices((28, 28))
    x = np.exp(-((rows - 13.5) ** 2 + (cols - 13.5) ** 2) / 2.0)[None].repeat(50, axis=0)
    y = Augmentation(rotation_deg=0, shift_px=2, noise_std=0)(x, np.random.default_rng(3))
    dy, dx = np.random.default_rng(3).uniform(-2, 2, size=(50, 2)).T  # same draws, documented order
    com_r = (y * rows).sum(axis=(1, 2)) / y.sum(axis=(1, 2))
    com_c = (y * cols).sum(axis=(1, 2)) / y.sum(axis=(1, 2))
    np.testing.assert_allclose(com_r - 13.5, dy, atol=0.02)
    np.testing.assert_allclose(com_c - 13.5, dx, atol=0.02)


def test_augmentation_reproducible(embedded):
    x = embedded.images[:20]
    aug = Augmentation()
    a = aug(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, aug(x, np.random.default_rng(5)))
    assert not np.array_equal(a, aug(x, np.random.default_rng(6)))
    assert a.shape == x.shape and a.dtype == np.float64


# --------------------------------------------------------------------------- make_pairs


def test_make_pairs_shapes_and_norms(embedded):
    p = make_pairs(embedded, n_pairs=64, n_heldout=32, seed=0)
    assert isinstance(p, PairData)
    assert p.N == 64 and p.d == 784 and p.n_heldout == 32
    assert p.A.shape == p.A_plus.shape == (64, 784)
    assert p.heldout_A.shape == p.heldout_A_plus.shape == (32, 784)
    for arr in (p.A, p.A_plus, p.heldout_A, p.heldout_A_plus):
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-12)
    assert not set(p.train_index) & set(p.heldout_index)
    np.testing.assert_array_equal(p.labels, embedded.labels[p.train_index])
    np.testing.assert_array_equal(p.heldout_labels, embedded.labels[p.heldout_index])
    assert len(np.unique(p.labels)) >= 8  # classes are mixed, not the first sorted block
    assert not np.allclose(p.A, p.A_plus)  # two different views
    # Z: all a_i, then all a_i^+.
    np.testing.assert_array_equal(p.Z[:64], p.A)
    np.testing.assert_array_equal(p.Z[64:], p.A_plus)
    np.testing.assert_array_equal(p.Z_heldout, np.concatenate([p.heldout_A, p.heldout_A_plus]))
    assert p.config == {
        "n_pairs": 64, "n_heldout": 32, "seed": 0, "rotation_deg": 10.0, "shift_px": 2.0,
        "noise_std": 0.05, "both_views": True, "dataset": "mnist-embedded",
    }


def test_make_pairs_seeds(embedded):
    a = make_pairs(embedded, 32, 16, seed=3)
    b = make_pairs(embedded, 32, 16, seed=3)
    c = make_pairs(embedded, 32, 16, seed=4)
    for name in ("A", "A_plus", "heldout_A", "heldout_A_plus", "train_index", "heldout_index"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.train_index, c.train_index)
    assert not np.array_equal(a.A, c.A)


def test_make_pairs_one_clean_view(embedded):
    p = make_pairs(embedded, 16, 8, both_views=False, seed=1)
    np.testing.assert_array_equal(p.A, unit_normalize(embedded.images[p.train_index]))
    np.testing.assert_array_equal(p.heldout_A, unit_normalize(embedded.images[p.heldout_index]))
    assert not np.allclose(p.A, p.A_plus)
    # Separate streams: the augmented view does not depend on whether A is augmented.
    q = make_pairs(embedded, 16, 8, both_views=True, seed=1)
    np.testing.assert_array_equal(p.A_plus, q.A_plus)
    same = make_pairs(embedded, 16, 0, augmentation=Augmentation.none())
    np.testing.assert_array_equal(same.A, same.A_plus)
    assert same.heldout_A.shape == (0, 784)


def test_make_pairs_validation(embedded):
    with pytest.raises(ConfigError, match=r"n_pairs=6000 plus n_heldout=500 exceeds the 5000 images of mnist-embedded"):
        make_pairs(embedded, 6000)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_pairs"):
            make_pairs(embedded, bad)
    with pytest.raises(ConfigError, match="n_heldout"):
        make_pairs(embedded, 10, n_heldout=-1)
    with pytest.raises(ConfigError, match="augmentation"):
        make_pairs(embedded, 10, augmentation={"noise_std": 0.1})
    with pytest.raises(ConfigError, match="dataset"):
        make_pairs(embedded.images, 10)


def test_make_pairs_zero_image():
    ds = Dataset(np.zeros((4, 28, 28)), np.arange(4), "zeros")
    with pytest.raises(DataError, match="zero norm.*dataset indices"):
        make_pairs(ds, 2, 1, augmentation=Augmentation.none())


def test_tensors(embedded):
    torch = pytest.importorskip("torch")
    p = make_pairs(embedded, 8, 4)
    t = p.tensors()
    assert set(t) == {"A", "A_plus", "Z", "heldout_A", "heldout_A_plus", "Z_heldout"}
    assert t["Z"].shape == (16, 784) and t["Z"].dtype == torch.float64
    np.testing.assert_array_equal(t["Z"].numpy(), p.Z)
    assert p.tensors(dtype=torch.float32)["A"].dtype == torch.float32
    with pytest.raises(ConfigError, match="floating torch dtype"):
        p.tensors(dtype=torch.int64)


def test_embedded_cache_is_written_and_rebuilt_when_corrupt(tmp_path, monkeypatch):
    from widessl.data import sources

    monkeypatch.setenv("WIDESSL_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(5000, 784)).astype(np.float64)
    y = rng.integers(0, 10, size=5000)
    calls = []

    def fake():
        calls.append(1)
        return X, y

    X1, y1 = sources._cached_mnist_data(fake)
    np.testing.assert_array_equal(X1, X)
    path = sources._cache_path()
    assert path.exists() and len(calls) == 1
    X2, y2 = sources._cached_mnist_data(fake)  # served from the cache
    assert len(calls) == 1
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    path.write_bytes(b"not an npz")  # a corrupt cache is rebuilt, not trusted
    X3, _ = sources._cached_mnist_data(fake)
    assert len(calls) == 2
    np.testing.assert_array_equal(X3, X)
