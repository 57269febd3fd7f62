"""``python -m actors.app.cli``: the ``saga`` command without its script."""

import sys

from actors.app.cli import main

sys.exit(main())
