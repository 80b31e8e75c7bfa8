"""`python -m training` entry point (see training/cli.py)."""

from __future__ import annotations

import sys

from training.cli import main

sys.exit(main())
