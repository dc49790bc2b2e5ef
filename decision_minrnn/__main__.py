"""`python -m decision_minrnn ...`: the same command as `decision-minrnn ...`."""

import sys

from .cli import main

sys.exit(main())
