"""The command line: the default job converges, results land in JSON, and every bad input
ends in one clear message and a non-zero exit, without a traceback."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

SMALL = ["--n-pairs", "32", "--n-heldout", "16", "--width", "64", "--outputs", "4", "--quiet"]


def widessl(*args, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "widessl.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_clean_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0], proc.stderr
    for f in fragments:
        assert f in err[0], (f, err[0])


def write_idx(folder, images, labels, magic_images=0x803):
    folder.mkdir(parents=True, exist_ok=True)
    n, r, c = images.shape
    (folder / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", magic_images, n, r, c) + images.tobytes())
    (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


@pytest.fixture
def digits():
    rng = np.random.default_rng(0)
    images = (rng.random((60, 28, 28)) * 255).astype(np.uint8)
    return images, (np.arange(60) % 10).astype(np.uint8)


def test_default_job_converges_and_writes_json(tmp_path):
    """The README's main command with the defaults: final loss <= initial / 10."""
    out = tmp_path / "run.json"
    proc = widessl("train", "--quiet", "--json", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    for key in ("initial_loss", "final_loss", "epochs", "ntk_change", "param_distance",
                "rep_distance_train", "rep_distance_heldout"):
        assert isinstance(r[key], (int, float)), key
    assert r["converged"] and r["final_loss"] <= r["initial_loss"] / 10
    assert r["config"]["width"] == 1024 and r["config"]["n_pairs"] == 256
    assert "epochs to convergence" in proc.stdout and "NTK change" in proc.stdout


def test_small_run_from_idx_folder(tmp_path, digits):
    write_idx(tmp_path / "MNIST" / "raw", *digits)
    out = tmp_path / "r.json"
    proc = widessl("train", "--data", str(tmp_path), *SMALL, "--lr", "0.1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["config"]["source"] == str(tmp_path)
    assert r["ntk_change"] > 0 and r["rep_distance_train"] >= 0 and r["final_loss"] < r["initial_loss"]


def test_same_seed_same_numbers(tmp_path):
    outs = []
    for name in ("a", "b"):
        p = tmp_path / f"{name}.json"
        assert widessl("train", *SMALL, "--max-epochs", "50", "--json", str(p)).returncode == 0
        r = json.loads(p.read_text())
        r.pop("wall_seconds"), r.pop("train_seconds")
        outs.append(r)
    assert outs[0] == outs[1]


def test_missing_data(tmp_path):
    assert_clean_error(widessl("train", "--data", str(tmp_path / "nowhere"), *SMALL), "nowhere")


def test_wrong_magic(tmp_path, digits):
    write_idx(tmp_path, *digits, magic_images=0x1234)
    assert_clean_error(widessl("train", "--data", str(tmp_path), *SMALL), "magic")


def test_truncated_file(tmp_path, digits):
    write_idx(tmp_path, *digits)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    proc = widessl("train", "--data", str(tmp_path), *SMALL)
    assert_clean_error(proc, "train-images-idx3-ubyte")
    assert "trunc" in proc.stderr.lower() or "bytes" in proc.stderr


def test_corrupt_gzip(tmp_path, digits):
    write_idx(tmp_path, *digits)
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:200])
    assert_clean_error(widessl("train", "--data", str(tmp_path), *SMALL), "train-images-idx3-ubyte.gz")


def test_nan_inputs(tmp_path):
    x = np.random.default_rng(0).random((60, 28, 28))
    x[3, 5, 5] = np.nan
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(60) % 10,
             x_test=x[:10], y_test=np.arange(10))
    assert_clean_error(widessl("train", "--data", str(tmp_path / "mnist.npz"), *SMALL), "NaN")


@pytest.mark.parametrize("args, fragment", [
    (["--activation", "swishy"], "unknown activation 'swishy'"),
    (["--width", "0"], "width (M) must be a positive integer"),
    (["--width", "-5"], "width (M) must be a positive integer"),
    (["--n-pairs", "6000"], "exceeds the 5000 images"),
    (["--outputs", "0"], "outputs (K)"),
])
def test_bad_parameters(args, fragment):
    assert_clean_error(widessl("train", *SMALL, *args), fragment)


def test_diverging_learning_rate():
    proc = widessl("train", *SMALL, "--lr", "1000")
    assert_clean_error(proc, "diverged at epoch", "smaller learning rate")


def test_cuda_requested_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_clean_error(widessl("train", *SMALL, "--device", "cuda"), "CUDA is not available")
