"""The ``lrtransfer`` command's entry point.

It lives outside the ``lrtransfer`` package on purpose: importing anything
under ``lrtransfer`` first runs ``lrtransfer/__init__``, which loads JAX
(about a second, more on a loaded machine). Here the arguments are parsed
and checked with the standard library alone (``lrtransfer_cli.options``),
so a usage error -- ``--epochs 0``, a misspelt method or task -- is
reported at once; only valid arguments load the library and run
(``lrtransfer._src.cli.run``).

Errors are of two kinds. A user error (bad flag, unusable data file, a
checkpoint of another run, a size that cannot fit) ends with one
``lrtransfer: error:`` line (argparse's own usage line for a malformed
flag), exit status 2 and no ``results.json``. Anything else is a bug: the
traceback is printed with a line asking to report it, exit status 1.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from lrtransfer_cli.options import (
  AUTO,
  METHODS,
  UsageError,
  build_parser,
  parse,
)

__all__ = ["main", "METHODS", "UsageError", "build_parser", "EXIT_BAD_INPUT",
           "EXIT_BUG"]

EXIT_BAD_INPUT = 2
EXIT_BUG = 1


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command; ``argv=None`` (the console script) reads
  ``sys.argv`` and also installs the interrupt watcher, which a caller's
  own process keeps otherwise."""
  try:
    args = parse(argv)
  except UsageError as error:
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  if args.list_methods:
    print("\n".join([*METHODS, AUTO]))
    return 0
  # The arguments are valid: only now the library (JAX, Flax, ...) loads.
  from lrtransfer._src import cli  # pylint: disable=import-outside-toplevel
  return cli.run(args, install_watcher=argv is None)
