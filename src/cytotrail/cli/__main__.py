"""``python -m cytotrail.cli``: the ``cytotrail`` command."""

import sys

from cytotrail.cli import main

sys.exit(main())
