"""The ``agenthood`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from agenthood_mw._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agenthood",
        description="Serve and operate an agenthood-mw agent service.",
    )
    parser.add_argument("--version", action="version", version=f"agenthood {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agenthood`` console script."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
