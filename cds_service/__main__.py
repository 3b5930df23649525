"""``python -m cds_service`` is the same as the ``cds-fasciculation`` command."""

import sys

from cds_service.cli import main

sys.exit(main())
