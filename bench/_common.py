"""Shared helpers of the widessl benchmarks: timing, GEMM rate, machine facts, JSON output.

Every benchmark imports widessl from this checkout (``src/`` first on ``sys.path``), takes
``--quick``, ``--device`` and ``--out``, measures its baseline in the same run, and writes one
JSON file. Timing is the median over repeats after warm-up, with the device synchronized
around each call; where two things are compared they are timed round-robin, so that load
from other processes on a shared machine falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# Threads: torch's default count (2 on the development machine). The OpenMP wait policy is
# set to PASSIVE (unless the environment says otherwise) before torch loads: on a shared
# 2-core VM the default spin-then-sleep policy adds scheduler-tick stalls (4 ms and more)
# to every small parallel region, which measured a tiny isfinite at 38 ms instead of 0.2 ms
# and made medians meaningless. Large GEMMs run at the same rate either way.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

RESULTS = REPO / "bench" / "results"


def parse_args(description: str, argv=None, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke run)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--out", default=None, help="folder for the JSON (default bench/results, bench/results/gpu on cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    if extra:
        extra(ap)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda was asked for but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is None:
        args.out = str(RESULTS / "gpu") if args.device.startswith("cuda") else str(RESULTS)
    args.device = torch.device(args.device)
    return args


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _once(fn, device) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def timeit(fn: Callable[[], object], device, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Median (and min, all) wall time of ``fn()`` in seconds, after ``warmup`` calls."""
    for _ in range(warmup):
        _once(fn, device)
    times = [_once(fn, device) for _ in range(repeats)]
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def interleaved(fns: dict[str, Callable[[], object]], device, *, repeats: int = 5, warmup: int = 1) -> dict:
    """Time several callables round-robin (a, b, c, a, b, c, ...): medians per name."""
    for _ in range(warmup):
        for fn in fns.values():
            _once(fn, device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(_once(fn, device))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "times_s": v} for k, v in times.items()}


def gemm_fn(m: int, k: int, n: int, device, dtype=torch.float32):
    """A callable doing one [m, k] x [k, n] torch.mm (and its flop count 2 m k n)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=g, dtype=dtype).to(device)
    b = torch.randn(k, n, generator=g, dtype=dtype).to(device)
    out = torch.empty(m, n, dtype=dtype, device=device)
    return (lambda: torch.mm(a, b, out=out)), 2.0 * m * k * n


def gemm_rate(m: int, k: int, n: int, device, *, dtype=torch.float32, repeats: int = 5) -> dict:
    """Measured torch.mm rate for [m, k] x [k, n] in GFLOP/s (median of repeats)."""
    fn, flops = gemm_fn(m, k, n, device, dtype)
    t = timeit(fn, device, repeats=repeats, warmup=2)
    return {"shape": [m, k, n], "dtype": str(dtype).replace("torch.", ""), "gflops": flops / t["median_s"] / 1e9,
            "median_s": t["median_s"]}


def peak_gemm_rate(device, *, quick: bool = False) -> dict:
    """The machine's large square float32 GEMM rate (the ceiling the fractions are read against)."""
    size = 2048 if quick or torch.device(device).type == "cpu" else 8192
    return gemm_rate(size, size, size, device, repeats=3 if quick else 5)


def memory_available_bytes(device) -> int:
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(device) -> dict:
    dev = torch.device(device)
    info = {
        "device": str(dev),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
    return info


def write_json(name: str, payload: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(payload)
    payload.setdefault("benchmark", name)
    payload["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def _json_default(o):
    if isinstance(o, torch.dtype):
        return str(o).replace("torch.", "")
    if isinstance(o, (torch.device, Path)):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(type(o).__name__)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b||_F / ||b||_F in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def unit_inputs(n: int, d: int, device, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """n embedded MNIST digits as unit-norm rows [n, d] (SPEC section 1); random unit
    vectors if d != 784 or the data cannot be loaded (timing does not depend on the values)."""
    if d == 784:
        try:
            from widessl.data import load_mnist

            images = load_mnist("embedded").images
            if images.shape[0] >= n:
                X = torch.as_tensor(images[:n].reshape(n, -1), dtype=torch.float64)
                return torch.nn.functional.normalize(X, dim=1).to(device=device, dtype=dtype)
        except Exception:  # noqa: BLE001 - any failure: random inputs time the same
            pass
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return torch.nn.functional.normalize(x, dim=1).to(device=device, dtype=dtype)


def mnist_pairs(n_pairs: int, device, dtype=torch.float32, seed: int = 0):
    """(A, A_plus) from the embedded MNIST digits with the default augmentations."""
    from widessl.data import load_mnist, make_pairs

    t = make_pairs(load_mnist("embedded"), n_pairs=n_pairs, n_heldout=0, seed=seed).tensors(dtype=dtype)
    return t["A"].to(device), t["A_plus"].to(device)


def tutorial_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The NTK recipe of PyTorch's own tutorial ("Neural Tangent Kernels", torch.func):
    per-example Jacobians by ``vmap(jacrev)`` of a single-example ``functional_call``, then
    ``einsum('Naf,Mbf->NMab')`` per parameter, summed. The one liberty: with ``x2 is x1`` the
    Jacobian is computed once (the tutorial computes it twice), which only makes the baseline
    faster and lighter. Returns [n1, n2, K, K]."""
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def fnet_single(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).squeeze(0)

    jac1 = vmap(jacrev(fnet_single), (None, 0))(params, x1)
    jac1 = [j.flatten(2) for j in jac1.values()]
    if x2 is x1:
        jac2 = jac1
    else:
        jac2 = vmap(jacrev(fnet_single), (None, 0))(params, x2)
        jac2 = [j.flatten(2) for j in jac2.values()]
    result = torch.stack([torch.einsum("Naf,Mbf->NMab", j1, j2) for j1, j2 in zip(jac1, jac2)])
    return result.sum(0)


def jacobian_bytes(model: torch.nn.Module, n: int, K: int, dtype=torch.float32) -> int:
    """Memory of the per-example Jacobians [n, K, P] the recipe holds."""
    P = sum(p.numel() for p in model.parameters())
    return n * K * P * torch.finfo(dtype).bits // 8


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def bench_main(name: str, doc: str, run: Callable[[argparse.Namespace], dict], argv=None) -> dict:
    """The shared entry point of every benchmark script: parse the common flags, run, save JSON."""
    args = parse_args(doc.splitlines()[1], argv)
    res = run(args)
    write_json(name, res, args.out)
    return res
