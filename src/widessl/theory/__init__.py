"""Theory instruments (SPEC sections 8 and 9): every quantity of Theorems 3.1 and 4.1, and the
generalization bound of Section 5 for kernelized Barlow Twins, next to what is measured.

Theorem 3.1 / 4.1 quantities:

* :func:`hessian_norm` -- max over inputs and outputs of ||grad^2_theta f_k(a)||_2, exact for
  :class:`~widessl.models.TwoLayerNet` (:func:`two_layer_hessian_norms`), by power iteration or
  Lanczos on Hessian-vector products for any module (:func:`hessian_spectral_norm`);
  :func:`certified_segment_hessian_bound` bounds it over a whole segment of parameter space;
* :func:`gradient_bound` -- c_0 = max ||grad_theta f_k(a)||; :func:`param_distance` -- R_T;
* :func:`measure_ntk_bound` -- all of the above for a trained network and the bound on the NTK
  change (:func:`ntk_change_bound`) beside the measured change.

Section 5: :func:`generalization_bound` (from N, K, B, kappa_bar, delta), :func:`rkhs_norm`
(B of a trained kernel model), :func:`population_bt_loss` (the population loss from fresh
pairs), :func:`finite_width_bound`; :class:`SphereKernel` evaluates Theta_inf fast on unit-norm
inputs. :func:`run_theory` runs the sweeps of ``widessl theory``; :func:`write_report` plots them.
"""

from widessl.theory.derivatives import interval_sup, second_derivative
from widessl.theory.generalization import (
    GeneralizationBound,
    PopulationLoss,
    bt_loss,
    correlation_distance,
    deviation_bound,
    finite_width_bound,
    generalization_bound,
    generalization_terms,
    population_bt_loss,
    rkhs_norm,
    union_grid_point,
)
from widessl.theory.gradient_bound import gradient_bound, gradient_norms, param_distance
from widessl.theory.hessian import (
    certified_segment_hessian_bound,
    dense_hessian,
    hessian_norm,
    hessian_spectral_norm,
    hessian_vector_product,
    interpolate,
    segment_hessian_norm,
    two_layer_hessian_norms,
)
from widessl.theory.ntk_bound import (
    NTKChangeBound,
    entrywise_ntk_bound,
    measure_ntk_bound,
    ntk_change_bound,
    ntk_change_bound_operator,
)
from widessl.theory.profile import TheoryProfile
from widessl.theory.report import fit_loglog, write_report
from widessl.theory.spectral import SpectralEstimate, lanczos, power_iteration
from widessl.ntk.sphere import SphereKernel
from widessl.theory.sweep import run_theory


__all__ = [
    "GeneralizationBound", "NTKChangeBound", "PopulationLoss", "SpectralEstimate", "SphereKernel", "TheoryProfile",
    "bt_loss", "certified_segment_hessian_bound", "correlation_distance", "dense_hessian", "deviation_bound",
    "entrywise_ntk_bound", "finite_width_bound", "fit_loglog", "generalization_bound", "generalization_terms", "gradient_bound",
    "gradient_norms", "hessian_norm", "hessian_spectral_norm", "hessian_vector_product", "interpolate",
    "interval_sup", "lanczos", "measure_ntk_bound", "ntk_change_bound", "ntk_change_bound_operator",
    "param_distance", "population_bt_loss", "power_iteration", "rkhs_norm", "run_theory", "second_derivative",
    "segment_hessian_norm", "two_layer_hessian_norms", "union_grid_point", "write_report",
]
