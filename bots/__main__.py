"""`python -m bots` is the `imaginebot` console script."""

import sys

from bots.cli import main

sys.exit(main())
