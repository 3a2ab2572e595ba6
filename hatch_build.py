"""Puts the collection into the wheel as ansible_collections/ray_vsphere/cluster.

The files are those of `ansible-galaxy collection build`, so galaxy.yml's
build_ignore is the one list of what the collection holds, and the installed
copy has the MANIFEST.json and FILES.json that ansible-galaxy writes (what
`ansible-galaxy collection list` and `verify` read). Editable installs skip
this: they reach the checkout through collections/ (dev-mode-dirs).
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

COLLECTION_PATH = "ansible_collections/ray_vsphere/cluster"


class CollectionBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if version == "editable":
            return
        self._work_dir = Path(tempfile.mkdtemp(prefix="ray-vsphere-wheel-"))
        galaxy = shutil.which("ansible-galaxy", path=str(Path(sys.executable).parent)) or "ansible-galaxy"
        # ANSIBLE_HOME: a wheel build leaves nothing in the builder's ~/.ansible.
        environment = dict(os.environ, ANSIBLE_HOME=str(self._work_dir / "ansible-home"))
        subprocess.run([galaxy, "collection", "build", "--output-path", str(self._work_dir), self.root],
                       check=True, stdout=subprocess.DEVNULL, env=environment)
        (artifact,) = self._work_dir.glob("ray_vsphere-cluster-*.tar.gz")
        collection = self._work_dir / "collection"
        with tarfile.open(artifact) as archive:
            archive.extractall(collection, filter="data")
        build_data["force_include"][str(collection)] = COLLECTION_PATH

    def finalize(self, version, build_data, artifact_path):
        if version != "editable":
            shutil.rmtree(self._work_dir, ignore_errors=True)
