"""The embedded vSphere testbed: vcsim plus SSH-reachable test guests.

Used by the test suite and by `testbed up`. Nothing here is used against a
real vCenter; the product code lives in the collection and in ray_provider.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = PROJECT_ROOT / ".tools" / "bin"
VCSIM_BIN = TOOLS_BIN / "vcsim"
