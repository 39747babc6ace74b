"""``python -m freeflow.cli``: the ``freeflow`` command."""

import sys

from freeflow.cli.main import main

sys.exit(main())
