"""python -m swimmy."""

import sys

from swimmy.cli import main

sys.exit(main())
