"""``python -m cdml``: the command-line tool."""

import sys

from cdml.cli import main

sys.exit(main())
