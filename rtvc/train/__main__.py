"""``python -m rtvc.train {train|voice|clone} ...``: the training subcommands without the full CLI."""

from __future__ import annotations

import argparse
import sys

from .commands import SUBCOMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtvc.train")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {}
    for name, (add, handler) in SUBCOMMANDS.items():
        for alias in ([name, "voice"] if name == "train" else [name]):
            add(sub.add_parser(alias))
            handlers[alias] = handler
    args = parser.parse_args(argv)
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
