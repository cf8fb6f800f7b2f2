"""``python -m l0.cli``: the ``l0`` command without the console script."""

from __future__ import annotations

import sys

from l0.cli import main

sys.exit(main())
