"""The embedded vSphere testbed: vcsim plus SSH-reachable test guests.

Used by the test suite and by `testbed up`. Nothing here is used against a
real vCenter; the product code lives in the collection and in ray_provider.
The testbed talks to vCenter through the collection's own module_utils, so
there is one PropertyCollector reader, task waiter and OVF importer.
"""

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = PROJECT_ROOT / ".tools" / "bin"
VCSIM_BIN = TOOLS_BIN / "vcsim"
COLLECTIONS_PATH = PROJECT_ROOT / "collections"

if str(COLLECTIONS_PATH) not in sys.path:
    sys.path.append(str(COLLECTIONS_PATH))
