"""``python -m taskbox`` (n8n's launcher runs ``python -I -B -m taskbox connect``)."""

import sys

from taskbox.launch import main

sys.exit(main())
