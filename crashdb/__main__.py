"""``python -m crashdb`` is the ``crashdb`` command."""

import sys

from crashdb.cli import main

sys.exit(main())
