"""python -m swimmy."""

import sys

from swimmy.cli.main import main

sys.exit(main())
