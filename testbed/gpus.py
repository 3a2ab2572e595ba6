"""The testbed's GPU layout (testbed/gpu_hosts.yml): what vcsim's fake GPU hosts have, for vcsim and for tests.

vcsim reads it as JSON (`vcsim -gpu-hosts FILE`, testbed/vcsim/gpu.go); tests read it here, so no device id is
written twice.
"""

import copy
import functools
import json
from pathlib import Path

import yaml

GPU_HOSTS_FILE = Path(__file__).resolve().parent / "gpu_hosts.yml"
# The vSphere API a testbed vcsim must announce for GPUs (simulator.Vcsim(api_version=API_VERSION)): Dynamic
# DirectPath I/O is vSphere 7.0's, vGPU profile info 7.0 U3's. Against govmomi's default 6.5, pyVmomi negotiates
# a version without those types and sends a VirtualPCIPassthroughDynamicBackingInfo as its base type, a plain
# VirtualDevice.DeviceBackingInfo, which vcsim refuses as vCenter would refuse a backing it does not know.
API_VERSION = "8.0.3.0"


@functools.lru_cache(maxsize=None)
def _layout():
    return yaml.safe_load(GPU_HOSTS_FILE.read_text())


def gpu_layout():
    """{"cluster": name, "hosts": {host name: [gpu, ...]}}; a gpu has model, mode ("passthrough" or "vgpu"),
    pci_id, vendor_id, device_id, names, custom_label (passthrough), memory_gib and vgpu_profiles (vgpu)."""
    return copy.deepcopy(_layout())


def write_vcsim_layout(path):
    """The layout as vcsim's -gpu-hosts file."""
    Path(path).write_text(json.dumps(_layout()))
    return Path(path)
