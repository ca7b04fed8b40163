"""Fast empirical NTK for any ``nn.Module`` by structured derivatives (method='structured').

For a linear layer z = x W^T + b inside the network, the gradient of output k with respect
to W is an outer product, d f_k / d W = delta_k x^T with delta_k = d f_k / d z, so that
layer's share of the kernel is

    Theta_kl(a, a')  +=  <delta_k(a), delta_l(a')> * (<x(a), x(a')> + [bias])

a (backward Gram) x (forward Gram) product: no Jacobian [n, K, P] is ever formed. The layer
inputs x are captured by forward hooks, the backward vectors delta by one backward pass
through zero "probes" added to each layer's output, batched over the K output cotangents
(``is_grads_batched``). The kernel is additive over parameters, so parameters that are not
covered this way (convolutions, normalization scales, weights used outside an ``nn.Linear``
call, shared weights, layers applied to more than a [batch, features] input) get the
generic Jacobian contraction restricted to them, and the sum is exact.

Which layers are covered is decided on the actual inputs, not assumed: a covered layer must
be a plain ``nn.Linear`` (its own ``forward``), hold its own unshared trainable weight, be
called exactly once per forward on a [batch, features] input, and its structured weight
gradient must equal autograd's for a random output cotangent. Anything else falls back.

Like the Jacobian path, this treats examples independently (a module whose outputs mix
examples of a batch, e.g. BatchNorm in training mode, has no per-example NTK); 'auto' in
:func:`widessl.ntk.empirical_ntk` sends such modules to the Jacobian path.

Cost: one forward and one K-batched backward pass per input, plus per covered layer the
Grams, 2 n1 n2 (K^2 out + in) flops, against 2 n1 n2 K^2 P for the Jacobian contraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from widessl.errors import ConfigError

Tensor = torch.Tensor

__all__ = ["structured_ntk", "structured_coverage"]


@dataclass
class _Layer:
    name: str            # module name
    weight: str | None   # parameter name of the weight if trained and covered
    bias: str | None     # parameter name of the bias if trained and covered


def _is_plain_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward


def _candidates(model: nn.Module, trainable: dict[str, Tensor]) -> list[_Layer]:
    """Plain nn.Linear modules whose trained weight/bias are their own, unshared parameters."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    by_id = {id(p): name for name, p in trainable.items()}
    layers = []
    for mname, m in model.named_modules():
        if not _is_plain_linear(m):
            continue
        names = []
        for key in ("weight", "bias"):
            p = m._parameters.get(key)
            # covered: a trained parameter used by this layer only (a shared one falls back)
            names.append(by_id.get(id(p)) if p is not None and uses.get(id(p)) == 1 else None)
        if names[0] is not None or names[1] is not None:
            layers.append(_Layer(mname, *names))
    return layers


class _Probe:
    """Forward hooks that record each layer's input and add a zero probe to its output."""

    def __init__(self, model: nn.Module, layers: list[_Layer]):
        self.model = model
        self.layers = layers
        self.inputs: dict[str, list[Tensor]] = {}
        self.probes: dict[str, list[Tensor]] = {}
        self.handles = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            self.handles.append(modules[layer.name].register_forward_hook(self._hook(layer.name)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _hook(self, name: str):
        def hook(module, args, out):
            x = args[0] if args else None
            probe = torch.zeros_like(out, requires_grad=True)
            self.inputs.setdefault(name, []).append(x)
            self.probes.setdefault(name, []).append(probe)
            return out + probe

        return hook

    def reset(self):
        self.inputs.clear()
        self.probes.clear()


def _call(model, params, x):
    return functional_call(model, params, (x,))


def _check_output(F: Tensor, n: int) -> None:
    if F.ndim != 2 or F.shape[0] != n:
        raise ConfigError(f"the model must map [n, d] inputs to [n, K] outputs; got {tuple(F.shape)} for n={n}")


def structured_coverage(model: nn.Module, x: Tensor, *, n_check: int = 8, seed: int = 0) -> list[_Layer]:
    """The linear layers whose NTK share the structured formula gives exactly, decided on
    (up to ``n_check`` rows of) the inputs ``x``: see the module docstring."""
    trainable = {k: v for k, v in model.named_parameters() if v.requires_grad}
    layers = _candidates(model, trainable)
    if not layers:
        return []
    xb = x[: max(1, min(n_check, x.shape[0]))]
    b = xb.shape[0]
    params = {k: v.detach().requires_grad_(True) for k, v in trainable.items()}
    probe = _Probe(model, layers)
    with torch.enable_grad(), probe:
        F = _call(model, params, xb)
        _check_output(F, b)
    ok = []
    for layer in layers:
        ins, prs = probe.inputs.get(layer.name, []), probe.probes.get(layer.name, [])
        if len(prs) != 1 or ins[0] is None or ins[0].ndim != 2 or ins[0].shape[0] != b \
                or prs[0].ndim != 2 or prs[0].shape[0] != b:
            continue
        ok.append(layer)
    if not ok:
        return []
    g = torch.Generator(device="cpu").manual_seed(seed)
    cot = torch.randn(F.shape, generator=g, dtype=F.dtype).to(F.device)
    wanted_p = [n for layer in ok for n in (layer.weight, layer.bias) if n is not None]
    wanted = [probe.probes[layer.name][0] for layer in ok] + [params[n] for n in wanted_p]
    grads = torch.autograd.grad(F, wanted, grad_outputs=cot, allow_unused=True)
    gprobe = dict(zip([layer.name for layer in ok], grads[: len(ok)]))
    gparam = dict(zip(wanted_p, grads[len(ok):]))
    tol = 1e2 * torch.finfo(F.dtype).eps
    covered = []
    for layer in ok:
        delta, xin = gprobe[layer.name], probe.inputs[layer.name][0].detach()
        if delta is None:  # the layer does not reach the output: a zero share, still exact
            delta = torch.zeros_like(probe.probes[layer.name][0])
        good = True
        for pname, pred in ((layer.weight, lambda: delta.T @ xin), (layer.bias, lambda: delta.sum(0))):
            if pname is None:
                continue
            true = gparam[pname]
            true = torch.zeros_like(params[pname]) if true is None else true
            p = pred()
            scale = max(float(true.abs().max()), float(p.abs().max()), 1e-300)
            if p.shape != true.shape or float((p - true).abs().max()) > tol * scale * math.sqrt(b * max(1, xin.shape[1])):
                good = False
        if good:
            covered.append(layer)
    return covered


def _features(model, params, layers, x, K):
    """Per covered layer: input x_l [n, in] and backward vectors [n, K, out] for all K outputs."""
    n = x.shape[0]
    probe = _Probe(model, layers)
    with torch.enable_grad(), probe:
        F = _call(model, params, x)
        _check_output(F, n)
        if F.shape[1] != K:
            raise ConfigError(f"the model's output width changed: {F.shape[1]} != {K}")
        probes = [probe.probes[layer.name][0] for layer in layers]
        eye = torch.eye(K, dtype=F.dtype, device=F.device)
        try:
            cot = eye[:, None, :].expand(K, n, K)
            deltas = torch.autograd.grad(F, probes, grad_outputs=cot, is_grads_batched=True, retain_graph=True,
                                         allow_unused=True)
        except RuntimeError:
            per_k = [torch.autograd.grad(F, probes, grad_outputs=eye[k].expand(n, K), retain_graph=k < K - 1,
                                         allow_unused=True) for k in range(K)]
            deltas = [None if per_k[0][i] is None else torch.stack([g[i] for g in per_k])
                      for i in range(len(probes))]
    out = []
    for layer, d in zip(layers, deltas):
        xin = probe.inputs[layer.name][0].detach()
        if d is None:  # the layer's output does not reach F: no share in the kernel
            d = torch.zeros((K,) + tuple(probe.probes[layer.name][0].shape), dtype=x.dtype, device=x.device)
        out.append((xin, d.detach().permute(1, 0, 2).reshape(n * K, -1)))  # rows (i, k)
    return out


def _rest_jacobian(model, rest: list[str], trainable, x, block_size):
    from torch.func import jacrev, vmap

    fixed = {k: v.detach() for k, v in trainable.items() if k not in rest}
    sub = {k: trainable[k].detach() for k in rest}

    def f_single(p, xi):
        return functional_call(model, {**fixed, **p}, (xi[None],))[0]

    jac = vmap(jacrev(f_single), in_dims=(None, 0))
    blocks = []
    for s in range(0, x.shape[0], block_size):
        J = jac(sub, x[s:s + block_size])
        xb = x[s:s + block_size]
        blocks.append(torch.cat([j.reshape(xb.shape[0], j.shape[1], -1) for j in J.values()], dim=2))
    return torch.cat(blocks)  # [n, K, P_rest]


@torch.no_grad()
def structured_ntk(model: nn.Module, x1: Tensor, x2: Tensor, block_size: int = 256,
                   coverage: list | None = None) -> Tensor:
    """Empirical NTK [n1, n2, K, K] of any module by structured derivatives (module docstring).

    ``x1 is x2`` computes the features once. Rows of x1 are processed ``block_size`` at a
    time (memory: one [block K, n2 K] Gram plus the x2 features).
    """
    trainable = {k: v for k, v in model.named_parameters() if v.requires_grad}
    if not trainable:
        raise ConfigError("the model has no trainable parameters, so its NTK is zero")
    same = x1 is x2
    layers = structured_coverage(model, x2) if coverage is None else coverage
    if not layers:  # nothing to structure: the plain Jacobian contraction is this path
        from widessl.ntk.empirical import jacobian_ntk

        return jacobian_ntk(model, x1, x2, min(block_size, 64))
    covered = {n for layer in layers for n in (layer.weight, layer.bias) if n is not None}
    rest = [k for k in trainable if k not in covered]
    params = {k: v.detach() for k, v in trainable.items()}
    F2 = _call(model, params, x2[:1])
    _check_output(F2, 1)
    K = F2.shape[1]
    n1, n2 = x1.shape[0], x2.shape[0]
    feats2 = _features(model, params, layers, x2, K) if layers else []
    J2 = _rest_jacobian(model, rest, trainable, x2, 64).reshape(n2 * K, -1) if rest else None
    out = torch.empty(n1, n2, K, K, dtype=x1.dtype, device=x1.device)
    for s in range(0, n1, block_size):
        xb = x1[s:s + block_size]
        nb = xb.shape[0]
        if same:
            feats1 = [(xi[s:s + nb], d[s * K:(s + nb) * K]) for xi, d in feats2]
            J1 = None if J2 is None else J2[s * K:(s + nb) * K]
        else:
            feats1 = _features(model, params, layers, xb, K) if layers else []
            J1 = None if J2 is None else _rest_jacobian(model, rest, trainable, xb, 64).reshape(nb * K, -1)
        theta = torch.zeros(nb * K, n2 * K, dtype=x1.dtype, device=x1.device) if J1 is None else J1 @ J2.T
        t4 = theta.view(nb, K, n2, K)
        for layer, (xa, da), (xc, dc) in zip(layers, feats1, feats2):
            bwd = (da @ dc.T).view(nb, K, n2, K)
            if layer.weight is not None:
                fwd = xa @ xc.T
                if layer.bias is not None:
                    fwd += 1.0
                t4.addcmul_(bwd, fwd[:, None, :, None])
            else:
                t4.add_(bwd)
        out[s:s + nb] = t4.permute(0, 2, 1, 3)
    return out
