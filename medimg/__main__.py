"""``python -m medimg`` runs the command line."""

import sys

from medimg.cli import main

sys.exit(main())
