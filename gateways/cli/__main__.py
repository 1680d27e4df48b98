"""``python -m gateways.cli``: the ``haven`` command without the console script."""

import sys

from gateways.cli import main

sys.exit(main())
