"""``python -m hokusai.doctor``."""

import sys

from hokusai.doctor.cli import main

sys.exit(main())
