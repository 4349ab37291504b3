"""``python -m detaccel`` runs the command line (also under ``torchrun``)."""

import sys

from detaccel.cli import main

sys.exit(main())
