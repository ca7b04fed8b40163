"""Neural tangent kernels: empirical (closed form and generic), infinite-width, drift."""

from widessl.ntk.analytic import analytic_ntk, analytic_ntk_fn, gaussian_expectations
from widessl.ntk.change import model_ntk_change, ntk_change, ntk_matrix
from widessl.ntk.sphere import SphereKernel
from widessl.ntk.empirical import empirical_ntk, empirical_ntk_fn, jacobian_ntk, ntk_trace, two_layer_ntk

__all__ = [
    "SphereKernel",
    "analytic_ntk",
    "analytic_ntk_fn",
    "empirical_ntk",
    "empirical_ntk_fn",
    "gaussian_expectations",
    "jacobian_ntk",
    "model_ntk_change",
    "ntk_change",
    "ntk_matrix",
    "ntk_trace",
    "two_layer_ntk",
]
