"""``python -m vmaptune``: the ``vmaptune`` command."""

import sys

from vmaptune.cli import main

if __name__ == "__main__":
  sys.exit(main())
