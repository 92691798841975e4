"""The ``lrtransfer`` command.

``lrtransfer run`` pretrains a source model, fine-tunes the target with every
strategy, transfer tool and baseline, and writes a table, plots and JSON.

Errors are of two kinds. A user error (bad flag, unusable data file, a
checkpoint of another run, a size that cannot fit) ends with one
``lrtransfer: error:`` line, exit status 2 and no ``results.json``. Anything
else is a bug: the traceback is printed with a line asking to report it,
exit status 1. SIGINT and SIGTERM end the run at once, at any moment, with
one line and exit status 130 / 143, after any save in progress has
completed (see ``interrupts``).

The command lives in three modules, one concern each: ``cli_options`` (the
parser and the checks of its input), ``cli_run`` (the run), and this one
(the entry point: exit statuses and how an error is reported).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Optional, Sequence

from lrtransfer._src import data as data_lib
from lrtransfer._src import interrupts
from lrtransfer._src.checkpoint import CheckpointError
from lrtransfer._src.cli_options import UsageError, build_parser, load_task
from lrtransfer._src.cli_run import Interrupted, run_command
from lrtransfer._src.sizes import SizeError

EXIT_BAD_INPUT = 2
EXIT_BUG = 1

# What a user can cause; anything else is a bug in lrtransfer.
USER_ERRORS = (UsageError, data_lib.DataError, CheckpointError, SizeError)

# Tests read the options' task loading here, under its name from when the
# options lived in this module.
_load_task = load_task


def _show_warning(message, category, filename, lineno, file=None,
                  line=None) -> None:
  del category, filename, lineno, file, line
  print(f"lrtransfer: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command; ``argv=None`` (the console script) also installs the
  interrupt watcher, which a caller's own process keeps otherwise."""
  parser = build_parser()
  args = parser.parse_args(argv)
  interrupted = None
  if argv is None:
    # The console script: the watcher stays until the process ends, so a
    # signal during interpreter shutdown also ends it cleanly.
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
