#!/usr/bin/env bash
# Run the widessl benchmarks on a CUDA machine and keep the timings (a few minutes on an H200).
#
#   bench/gpu_check.sh            # full sizes
#   bench/gpu_check.sh --quick    # smaller sizes
#
# Writes bench/results/gpu/*.json, bench/results/gpu/TABLE.md (the same table as the CPU run)
# and bench/results/gpu/env.txt (nvidia-smi, torch, CUDA). float32 matmuls run in true FP32
# (torch's default allow_tf32=False for matmul); the JSON records the setting.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results/gpu
mkdir -p "$OUT"
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi || echo "nvidia-smi not found"
  python - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
ok = torch.cuda.is_available()
print("cuda available:", ok)
if ok:
    print("device:", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
    print("allow_tf32 (matmul):", torch.backends.cuda.matmul.allow_tf32)
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.float64)
    err = float(((x @ x).cpu() - x.cpu() @ x.cpu()).abs().max())
    print("float64 matmul, max |GPU - CPU|:", err)
    assert err < 1e-9, "GPU matmul disagrees with the CPU"
else:
    raise SystemExit("CUDA is not available: nothing to check")
EOF
} 2>&1 | tee "$OUT/env.txt"
# Each benchmark with --device cuda; a failure is recorded and the rest still run.
timeout 900 python bench/run_all --device cuda --out "$OUT" --table "$OUT/TABLE.md" "$@"
echo "results in $OUT"
