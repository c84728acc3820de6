"""The tests' name for the protocol client, which is the memfd_broker package's wire module (python/ in the
source tree): `import mfb` keeps working in the test files and their helpers, with one copy of the client."""

import os
import sys

# The package's folder in the source tree: beside tests/ whether the tree is built in place or elsewhere
# (make distcheck), since the package is only sources.
PACKAGE_PARENT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "python")
if PACKAGE_PARENT not in sys.path:
    sys.path.insert(0, PACKAGE_PARENT)

from memfd_broker import _wire  # noqa: E402

# The module itself, not a copy of its names: what a test changes in mfb, it changes in the client.
sys.modules[__name__] = _wire
