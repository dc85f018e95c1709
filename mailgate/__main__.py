"""``python -m mailgate`` is the ``mailgate`` command."""

import sys

from mailgate.cli import main

sys.exit(main())
