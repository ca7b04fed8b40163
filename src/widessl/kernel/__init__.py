"""Kernel models of Barlow Twins and representation distances (SPEC section 6)."""

from widessl.kernel.distance import procrustes_rotation, representation_distance
from widessl.kernel.linearized import LinearizedTwoLayer
from widessl.kernel.model import KernelModel, apply_kernel

__all__ = ["KernelModel", "LinearizedTwoLayer", "apply_kernel", "procrustes_rotation", "representation_distance"]
