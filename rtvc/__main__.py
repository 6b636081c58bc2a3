"""``python -m rtvc``: the same as the ``rtvc`` command."""

import sys

from .cli import main

sys.exit(main())
