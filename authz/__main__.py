"""``python -m authz``: run one authz instance configured from HOKUSAI_* variables."""

import sys

from authz.server import main

sys.exit(main())
