"""The ``widessl`` command line. Every user error ends in one message and a non-zero exit."""

from __future__ import annotations

import argparse
import sys

from widessl.errors import WidesslError


def _add_train_parser(sub) -> None:
    from widessl.cli.train import add_arguments

    p = sub.add_parser(
        "train",
        help="train one network under Barlow Twins and compare it with its kernel models",
        description="Train a network in the NTK parameterization with full-batch gradient descent on "
        "the Barlow Twins loss of N positive pairs, then report the NTK change, the weight change and "
        "the distance to the kernel models (Theta_0 and Theta_inf) trained for the same epochs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    from widessl import __version__

    parser = argparse.ArgumentParser(
        prog="widessl",
        description="Barlow Twins in the kernel regime: networks, their NTK, and kernel models.",
    )
    parser.add_argument("--version", action="version", version=f"widessl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except WidesslError as exc:
        print(f"widessl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"widessl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
