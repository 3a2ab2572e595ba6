# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An OVF package's manifest (the .mf, DSP0243 5.1): its lines, and what it says of the descriptor.

OvfPackage (_ovf_package.py) checks every file against it when it reads the
package; check mode, which reads the descriptor only, checks that one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError

# A manifest line, as ovftool writes it: SHA256(disk.vmdk)= 3f5a...
MANIFEST_LINE = re.compile(r"^(?P<algorithm>SHA1|SHA256|SHA512|\w+)\((?P<file>[^)]+)\)\s*=\s*(?P<digest>[0-9A-Fa-f]+)$")
MANIFEST_ALGORITHMS = ("sha1", "sha256", "sha512")
# A manifest lists a few files, one line each: more is not a manifest, and is not read into memory.
MAX_MANIFEST_BYTES = 1024 * 1024


def listed_digests(location, name, text):
    """{file: (algorithm, hex digest)} of manifest `name`; a line of another form, or an unknown algorithm, fails."""
    listed = {}
    for line in text.splitlines():
        match = MANIFEST_LINE.match(line.strip())
        if line.strip() and not match:
            raise RayVsphereError("OVF source %s: manifest %s has a line that is not ALGORITHM(file)= digest: %r"
                                  % (location, name, line.strip()))
        if match:
            listed[match.group("file")] = (match.group("algorithm").lower(), match.group("digest").lower())
    for href, (algorithm, expected) in listed.items():
        if algorithm not in MANIFEST_ALGORITHMS:
            raise RayVsphereError("OVF source %s: manifest %s uses %s; SHA1, SHA256 and SHA512 are known"
                                  % (location, name, algorithm.upper()))
    return listed


def no_manifest_error(location, descriptor_name):
    return RayVsphereError("OVF source %s: no manifest (%s.mf) beside the descriptor, so nothing shows the image is "
                           "the one its maker wrote: give its ovf_sha256 (sha256sum of the OVA; of an .ovf, see "
                           "ovf_sha256), or export it with a manifest (ovftool writes one)"
                           % (location, os.path.splitext(descriptor_name)[0]))


def check_digest(location, manifest_name, href, algorithm, expected, digest):
    if digest != expected:
        raise RayVsphereError("OVF source %s: %s's %s is %s, not the %s manifest %s gives: the image is damaged or "
                              "was altered" % (location, href, algorithm.upper(), digest, expected, manifest_name))


def check_descriptor(location, manifest, descriptor_name, descriptor_bytes, sha256_given):
    """Check mode's part of the manifest check: it lists the descriptor, with the digest the descriptor has.

    manifest: (name, text) or None; without one, only an image pinned by ovf_sha256 is taken (as in the full check).
    """
    if manifest is None:
        if sha256_given:
            return
        raise no_manifest_error(location, descriptor_name)
    name, text = manifest
    listed = listed_digests(location, name, text)
    if descriptor_name not in listed:
        raise RayVsphereError("OVF source %s: manifest %s does not list %s" % (location, name, descriptor_name))
    algorithm, expected = listed[descriptor_name]
    check_digest(location, name, descriptor_name, algorithm, expected,
                 hashlib.new(algorithm, descriptor_bytes).hexdigest())
