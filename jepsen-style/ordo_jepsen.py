#!/usr/bin/env python3
"""``python jepsen-style/ordo_jepsen.py run ...``: the fault-injection runner for ordo.

A thin launcher for :mod:`ordojepsen.cli` (the package lives next to this
file). See jepsen-style/README.md.
"""

import os
import sys

# The runner starts processes while gRPC threads run; gRPC's fork handlers
# are not needed (children exec at once) and only print warnings.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(1, REPO)

from ordojepsen.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
