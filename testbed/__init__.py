"""The embedded vSphere testbed: vcsim plus SSH-reachable test guests.

Used by the test suite and by `testbed up`. Nothing here is used against a
real vCenter; the product code lives in the collection and in ray_provider.
The testbed talks to vCenter through the collection's own module_utils, so
there is one PropertyCollector reader, task waiter and OVF importer.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = PROJECT_ROOT / ".tools" / "bin"
VCSIM_BIN = TOOLS_BIN / "vcsim"
