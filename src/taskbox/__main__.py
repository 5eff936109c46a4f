"""``python -m taskbox``."""

import sys

from taskbox.cli import main

sys.exit(main())
