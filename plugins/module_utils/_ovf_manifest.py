# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An OVF package's manifest (the .mf, DSP0243 5.1): reading it, and checking the package against it.

OvfPackage (_ovf_package.py) has every file checked when it reads the whole
package (check_package); check mode, which reads the descriptor only, has
that one checked (check_descriptor).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible.module_utils.six.moves.urllib.parse import urlsplit

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_download import CHUNK

# A manifest line, as ovftool writes it: SHA256(disk.vmdk)= 3f5a...
MANIFEST_LINE = re.compile(r"^(?P<algorithm>SHA1|SHA256|SHA512|\w+)\((?P<file>[^)]+)\)\s*=\s*(?P<digest>[0-9A-Fa-f]+)$")
MANIFEST_ALGORITHMS = ("sha1", "sha256", "sha512")
# A manifest lists a few files, one line each: more is not a manifest, and is not read into memory.
MAX_MANIFEST_BYTES = 1024 * 1024


def escapes(name):
    """Whether a name the package gives leads outside it: empty, absolute, a URL, or a way up (..)."""
    parts = name.replace("\\", "/").split("/")
    return not name or name.startswith("/") or bool(urlsplit(name).scheme) or ".." in parts or os.path.isabs(name)


def read_manifest(package):
    """(name, text) of the package's manifest (the .mf beside the .ovf, DSP0243 5.1), or None."""
    if package.archive:
        names = [member.name for member in package.members() if member.name.endswith(".mf")]
    else:
        names = [name for name in [os.path.splitext(package.descriptor_name)[0] + ".mf"]
                 if os.path.lexists(os.path.join(package.ovf_dir, name))]
    if not names:
        return None
    name = names[0]
    if not package.regular_file(name):
        raise RayVsphereError("OVF source %s: manifest %s is not a regular file inside the package (a link, "
                              "a symlink out of its folder, a device or a folder)" % (package.location, name))
    stream = package.open_file(name)
    try:
        data = stream.read(MAX_MANIFEST_BYTES + 1)
    finally:
        stream.close()
    if len(data) > MAX_MANIFEST_BYTES:
        raise RayVsphereError("OVF source %s: manifest %s is larger than %d bytes, more than a list of the "
                              "package's files" % (package.location, name, MAX_MANIFEST_BYTES))
    return name, data.decode("utf-8", "replace")


def check_package(package):
    """Every file the manifest lists is in the package and has the digest it gives; every referenced file is listed.

    DSP0243 makes the manifest optional, but without one nothing tells a
    damaged or altered image from a good one: such an image is taken
    only when ovf_sha256 pins it. Every name is checked before any file
    is read. All of it before anything is uploaded.
    """
    location = package.location
    manifest = read_manifest(package)
    if manifest is None:
        if package.pinned:
            return
        raise no_manifest_error(location, package.descriptor_name)
    name, text = manifest
    listed = listed_digests(location, name, text)
    for href in sorted(listed):
        if escapes(href) or not package.regular_file(href):
            raise RayVsphereError("OVF source %s: manifest %s lists %r, which is not a file of the package: a "
                                  "manifest names the package's own files by relative path" % (location, name, href))
    for href in [package.descriptor_name] + list(package.files):
        if href not in listed:
            raise RayVsphereError("OVF source %s: manifest %s does not list %s" % (location, name, href))
    for href, (algorithm, expected) in sorted(listed.items()):
        digest = hashlib.new(algorithm)
        stream = package.open_file(href)
        try:
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                digest.update(chunk)
        finally:
            stream.close()
        check_digest(location, name, href, algorithm, expected, digest.hexdigest())


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


def check_descriptor(package, descriptor_bytes):
    """Check mode's part of the manifest check: it lists the descriptor, with the digest the descriptor has.

    Without a manifest only an image pinned by ovf_sha256 is taken, as in check_package.
    """
    location, descriptor_name = package.location, package.descriptor_name
    manifest = read_manifest(package)
    if manifest is None:
        if package.pinned:
            return
        raise no_manifest_error(location, descriptor_name)
    name, text = manifest
    listed = listed_digests(location, name, text)
    if descriptor_name not in listed:
        raise RayVsphereError("OVF source %s: manifest %s does not list %s" % (location, name, descriptor_name))
    algorithm, expected = listed[descriptor_name]
    check_digest(location, name, descriptor_name, algorithm, expected,
                 hashlib.new(algorithm, descriptor_bytes).hexdigest())
