"""The ``widessl`` command line. Every user error ends in one message and a non-zero exit."""

from __future__ import annotations

import argparse
import sys

from widessl.errors import WidesslError


# Each subcommand lives in its own module exposing HELP, DESCRIPTION and add_arguments(parser);
# add_arguments sets ``func`` (called with the parsed args, returns the exit code).
SUBCOMMANDS = ("train", "reproduce", "theory")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from widessl import __version__

    parser = argparse.ArgumentParser(
        prog="widessl",
        description="Barlow Twins in the kernel regime: networks, their NTK, and kernel models.",
    )
    parser.add_argument("--version", action="version", version=f"widessl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"widessl.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not built yet in this checkout
            if exc.name != f"widessl.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.DESCRIPTION,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
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
