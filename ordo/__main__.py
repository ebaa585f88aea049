import sys

from ordo.cli import main

sys.exit(main())
