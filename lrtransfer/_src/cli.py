"""The ``lrtransfer`` command, once its arguments are parsed and checked.

``lrtransfer run`` pretrains a source model, fine-tunes the target with every
strategy, transfer tool and baseline, and writes a table, plots and JSON.

The entry point is :func:`lrtransfer_cli.main`, outside this package so that
usage errors are reported before JAX is imported; it calls :func:`run` here
with valid arguments. A user error found from here on (an unusable data
file, a checkpoint of another run, a size that cannot fit) ends with one
``lrtransfer: error:`` line, exit status 2 and no ``results.json``. Anything
else is a bug: the traceback is printed with a line asking to report it,
exit status 1. SIGINT and SIGTERM end the run at once, at any moment, with
one line and exit status 130 / 143, after any save in progress has
completed (see ``interrupts``).

The command lives in these modules, one concern each: ``lrtransfer_cli``
(the entry point, the parser and the checks of the arguments alone),
``cli_options`` (the checks that need the data), ``cli_run`` (the run), and
this one (exit statuses and how an error is reported).
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings

from lrtransfer._src import data as data_lib
from lrtransfer._src import interrupts
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.cli_options import load_task
from lrtransfer._src.cli_run import Interrupted, run_command
from lrtransfer._src.sizes import SizeError
from lrtransfer_cli import EXIT_BAD_INPUT, EXIT_BUG, main
from lrtransfer_cli.options import UsageError, build_parser

__all__ = ["main", "run", "build_parser", "EXIT_BAD_INPUT", "EXIT_BUG",
           "USER_ERRORS"]

# What a user can cause; anything else is a bug in lrtransfer.
USER_ERRORS = (UsageError, data_lib.DataError, CheckpointError, SizeError)

# Tests read the options' task loading here, under its name from when the
# options lived in this module.
_load_task = load_task


def _show_warning(message, category, filename, lineno, file=None,
                  line=None) -> None:
  del category, filename, lineno, file, line
  print(f"lrtransfer: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace, install_watcher: bool = False) -> int:
  """Runs ``lrtransfer run`` with checked ``args``; the exit status.

  ``install_watcher`` (the console script): the interrupt watcher stays
  until the process ends, so a signal during interpreter shutdown also ends
  it cleanly; a caller's own process keeps its handlers otherwise.
  """
  interrupted = None
  if install_watcher:
    interrupted = Interrupted()
    interrupts.install(interrupted)
  try:
    with warnings.catch_warnings():
      # The library's warnings (a schedule longer than the run, ...) as one
      # line each, like the CLI's own, not Python's file:line format.
      warnings.showwarning = _show_warning
      return run_command(args, interrupted)
  except USER_ERRORS as error:
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except OSError as error:  # the file system refused: not a bug of ours
    print(f"lrtransfer: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:  # only without the watcher (called in-process)
    print("lrtransfer: interrupted", file=sys.stderr)
    return 130
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    print("lrtransfer: internal error: this is a bug in lrtransfer, please "
          "report it with the traceback above", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
  sys.exit(main())
