"""Digit augmentations: small random rotation, translation and Gaussian pixel noise.

One call draws, per image, an angle ``theta ~ U[-rotation_deg, rotation_deg]`` and a shift
``(dx, dy) ~ U[-shift_px, shift_px]^2``, warps the image by the rotation about its centre
followed by the shift (bilinear, zero fill outside), then adds i.i.d. ``N(0, noise_std^2)``
noise to every pixel. The result is not clipped to ``[0, 1]``: the views are unit-normalized
afterwards (:func:`widessl.data.make_pairs`), and clipping would bias the noise.

Conventions: arrays are ``[n, rows, cols]``; a positive angle turns the digit
counter-clockwise as displayed (row 0 at the top); ``dx > 0`` moves it right, ``dy > 0`` down.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from widessl.errors import ConfigError, DataError

__all__ = ["Augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Random rotation + translation + additive Gaussian noise; any part 0 switches it off.

    Parameters
    ----------
    rotation_deg : float
        Maximum absolute rotation angle in degrees (at most 180).
    shift_px : float
        Maximum absolute shift in pixels, drawn independently along each axis.
    noise_std : float
        Standard deviation of the per-pixel Gaussian noise, in units of pixels / 255.

    Examples
    --------
    >>> aug = Augmentation(rotation_deg=15.0, shift_px=0.0)
    >>> views = aug(images, np.random.default_rng(0))  # images: [n, 28, 28]
    """

    rotation_deg: float = 10.0
    shift_px: float = 2.0
    noise_std: float = 0.05

    def __post_init__(self):
        for field in ("rotation_deg", "shift_px", "noise_std"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(
                    f"Augmentation.{field} must be a non-negative number, got {value!r} "
                    f"({type(value).__name__})"
                )
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(
                    f"Augmentation.{field} must be finite and >= 0 (0 switches it off), got {value}"
                )
            object.__setattr__(self, field, value)
        if self.rotation_deg > 180.0:
            raise ConfigError(
                f"Augmentation.rotation_deg must be at most 180 (angles are drawn from "
                f"[-rotation_deg, rotation_deg]), got {self.rotation_deg}"
            )

    @classmethod
    def none(cls) -> "Augmentation":
        """The identity augmentation (all parts off)."""
        return cls(rotation_deg=0.0, shift_px=0.0, noise_std=0.0)

    @property
    def identity(self) -> bool:
        """True if every part is off, so a call returns a copy of its input."""
        return self.rotation_deg == 0.0 and self.shift_px == 0.0 and self.noise_std == 0.0

    def as_dict(self) -> dict:
        """The three parameters as a plain dict (for configs and logs)."""
        return asdict(self)

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment each image with its own random draw.

        Parameters
        ----------
        images : np.ndarray
            ``[n, rows, cols]`` (MNIST: ``[n, 28, 28]``), real and finite.
        rng : np.random.Generator
            Source of all randomness (an int seed is also accepted). Draw order: all angles,
            then all shifts ``[n, 2]`` as ``(dy, dx)``, then the noise ``[n, rows, cols]``;
            parts that are off draw nothing.

        Returns
        -------
        np.ndarray
            float64 ``[n, rows, cols]``, a new array.
        """
        x = np.asarray(images)
        if x.ndim != 3:
            raise DataError(
                f"Augmentation expects images shaped [n, rows, cols], got {x.shape}; reshape "
                "flat MNIST vectors with x.reshape(-1, 28, 28)"
            )
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise DataError(f"Augmentation expects real-valued images, got dtype {x.dtype}")
        x = x.astype(np.float64, copy=True)
        if not np.isfinite(x).all():
            raise DataError("Augmentation got images containing NaN or inf; clean the input first")
        if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(
                f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}"
            )
        n, rows, cols = x.shape
        if n == 0 or self.identity:
            return x

        angles = (
            np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg, size=n))
            if self.rotation_deg > 0
            else np.zeros(n)
        )
        shifts = (
            rng.uniform(-self.shift_px, self.shift_px, size=(n, 2))
            if self.shift_px > 0
            else np.zeros((n, 2))
        )
        if self.rotation_deg > 0 or self.shift_px > 0:
            centre = np.array([(rows - 1) / 2.0, (cols - 1) / 2.0])
            out = np.empty_like(x)
            for i in range(n):
                theta, t = angles[i], shifts[i]
                if theta == 0.0 and t[0] == 0.0 and t[1] == 0.0:
                    out[i] = x[i]
                    continue
                c, s = math.cos(theta), math.sin(theta)
                # Forward map on (row, col): out = R (in - centre) + centre + t, with R turning
                # counter-clockwise on screen. affine_transform wants the inverse map
                # in = R^T (out - centre - t) + centre, i.e. matrix R^T and this offset.
                rot_inv = np.array([[c, s], [-s, c]])
                offset = centre - rot_inv @ (centre + t)
                # One warp for rotation and shift together: half the interpolation cost and blur.
                ndimage.affine_transform(
                    x[i], rot_inv, offset=offset, output=out[i], order=1, mode="constant", cval=0.0
                )
            x = out
        if self.noise_std > 0:
            x += rng.normal(0.0, self.noise_std, size=x.shape)
        return x
