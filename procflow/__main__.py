"""``python -m procflow``: the ``procflow`` command."""

import sys

from .cli import main

sys.exit(main())
