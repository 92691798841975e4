"""``python -m lrtransfer_cli``: the ``lrtransfer`` command."""

import sys

from lrtransfer_cli import main

sys.exit(main())
