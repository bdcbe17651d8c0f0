"""``python -m crashdb`` is the ``crashdb`` command."""

import sys

from crashdb.app.cli import main

sys.exit(main())
