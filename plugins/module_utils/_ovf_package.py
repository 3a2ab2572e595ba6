# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An OVF or OVA, on disk or at a URL: its descriptor, manifest and content hash. No vCenter here.

What goes over http(s), and the key a URL has without downloading it, is in _ovf_download.py.

Written here because no maintained collection offers it: vmware.vmware only
deploys OVFs from content libraries, and community.vmware's
vmware_deploy_ovf reads a local file only and checks no manifest.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from xml.etree import ElementTree

from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_download import (
    CHUNK, OvfDownload, plain_http_problem)

OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"
SHA256_KEY = "sha256:"
# A manifest line, as ovftool writes it: SHA256(disk.vmdk)= 3f5a...
MANIFEST_LINE = re.compile(r"^(?P<algorithm>SHA1|SHA256|SHA512|\w+)\((?P<file>[^)]+)\)\s*=\s*(?P<digest>[0-9A-Fa-f]+)$")
MANIFEST_ALGORITHMS = ("sha1", "sha256", "sha512")


class OvfPackage(object):
    """A local .ovf with its files, a local .ova, or an http(s) URL to either.

    Nothing is read before open() (or `with`): key() names the content
    cheaply, so a caller that finds a template by it never downloads. A URL
    is downloaded once into a private temp folder: an OVA's members come in
    tar order and each NFC upload needs its length up front.

    content_hash is the SHA-256 of the OVA file; of an .ovf, of the
    descriptor followed by the files it references, in its References order.
    With `sha256` given, an opened package is checked against it.
    """

    def __init__(self, location, validate_certs=True, timeout=600, ca_path=None, sha256=None, hash_cache=None):
        self.location = location
        self._expected_sha256 = sha256.lower() if sha256 else None
        self._hash_cache = hash_cache
        self._is_url = urlsplit(location).scheme.lower() in ("http", "https")
        unverified = plain_http_problem(location, sha256)
        if unverified:
            raise RayVsphereError("OVF source %s" % unverified)
        if self._is_url and ca_path and not os.path.isfile(ca_path):
            raise RayVsphereError("ovf_ca_path %s: no such file" % ca_path)
        self._http = OvfDownload(location, validate_certs, ca_path, timeout, self._expected_sha256) if self._is_url else None
        self._url_key = None
        self._path = None
        self._download_dir = None
        self._tar = None
        self._ovf_dir = None
        self._content_hash = None
        self.opened = False
        self.downloaded = False
        self.descriptor = None
        self.files = {}  # href -> size

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._download_dir is not None:
            shutil.rmtree(self._download_dir, ignore_errors=True)
            self._download_dir = None

    def key(self):
        """What names the content without downloading it, or None when nothing does.

        'sha256:<content hash>' when it is known up front: from the sha256
        option, or for a local file from the hash cache (which reads the file
        only when its path, size or times changed). For a URL, the server's
        validators of it from a HEAD request (see OvfDownload.head_key).
        """
        if self._expected_sha256:
            return SHA256_KEY + self._expected_sha256
        if self._is_url:
            self._url_key = self._http.head_key()
            return self._url_key
        self.open()
        return SHA256_KEY + self.content_hash

    def template_key(self):
        """The key to record on a template made from this (opened) package.

        A URL's validators only where they cover the whole content: an OVA.
        The disks of an .ovf are separate files its HEAD says nothing about,
        so such a template is found by content hash only.
        """
        if self._url_key and self._tar is not None:
            return self._url_key
        return SHA256_KEY + self.content_hash

    @property
    def content_hash(self):
        if self._content_hash is None:
            paths = self._local_paths()
            if self._hash_cache is not None:
                self._content_hash = self._hash_cache.sha256(paths, _hash_files)
            else:
                self._content_hash = _hash_files(paths)
        return self._content_hash

    def open(self):
        if self.opened:
            return
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        self.opened = True

    def _open(self):
        path = self.location
        if self._is_url:
            path = self._download(self.location)
        elif not os.path.isfile(path):
            raise RayVsphereError("OVF source %s: no such file" % self.location)
        if tarfile.is_tarfile(path):
            try:
                self._tar = tarfile.open(path)
                names = [name for name in self._tar.getnames() if name.endswith(".ovf")]
            except (tarfile.TarError, EOFError) as error:
                raise RayVsphereError("OVF source %s: the archive is damaged (%s)" % (self.location, error))
            if not names:
                raise RayVsphereError("OVF source %s: an archive without an .ovf descriptor" % self.location)
            self.descriptor = self._descriptor_text(self._tar.extractfile(names[0]).read(), names[0])
            sizes = dict((member.name, member.size) for member in self._tar.getmembers())
        elif path.endswith(".ova"):
            raise RayVsphereError("OVF source %s: not an OVA (a tar archive holding an .ovf descriptor)" % self.location)
        else:
            self.descriptor = self._read_descriptor(path)
            self._ovf_dir = os.path.dirname(os.path.abspath(path))
            sizes = None
        self._path = path
        self.files = self._referenced_files(sizes)
        self._check_manifest()
        if self._expected_sha256 and self.content_hash != self._expected_sha256:
            raise RayVsphereError("OVF source %s: its SHA-256 is %s, not the %s ovf_sha256 gives"
                                  % (self.location, self.content_hash, self._expected_sha256))

    def _local_paths(self):
        if self._tar is not None:
            return [self._path]
        return [self._path] + [os.path.join(self._ovf_dir, href) for href in self.files]

    def _download(self, url):
        self._download_dir = tempfile.mkdtemp(prefix="ray-vsphere-ovf-")
        target = os.path.join(self._download_dir, os.path.basename(urlsplit(url).path) or "package.ova")
        # Hashed while it streams in, in content_hash's order: no second read of a multi-GiB file.
        digest = hashlib.sha256()
        # The GET's own validators: they describe the bytes that came, should the file have changed since the HEAD.
        self._url_key = self._http.validators_key(self._http.fetch(url, target, digest))
        if not tarfile.is_tarfile(target):  # an .ovf: fetch the files it references next to it
            # Each at its href below the descriptor, as on the server: by basename, a
            # subfolder's file would be missing and two of one name would overwrite each other.
            for href in _unique(self._hrefs(self._read_descriptor(target))):
                self._http.fetch(urljoin(url, href), os.path.join(self._download_dir, href), digest)
        self._content_hash = digest.hexdigest()
        self.downloaded = True
        return target

    @staticmethod
    def _read_text(path):
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    def _read_descriptor(self, path):
        with open(path, "rb") as handle:
            return self._descriptor_text(handle.read(), os.path.basename(path))

    def _descriptor_text(self, data, name):
        """The descriptor as text; a descriptor in another encoding fails naming it and the first bad byte.

        Not decoded with replacement characters: what vCenter would get as the
        descriptor must be what the package holds.
        """
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            failure = RayVsphereError("OVF source %s: descriptor %s is not UTF-8 text (byte 0x%02x at offset %d): "
                                      "save it as UTF-8" % (self.location, name, bytearray(data)[error.start],
                                                            error.start))
            failure.__cause__ = error  # py2-compatible `raise ... from error`
            raise failure

    def _hrefs(self, descriptor):
        try:
            envelope = ElementTree.fromstring(descriptor)
        except ElementTree.ParseError as error:
            raise RayVsphereError("OVF source %s: the descriptor is not valid XML: %s" % (self.location, error))
        if envelope.tag != OVF_NS + "Envelope":
            raise RayVsphereError("OVF source %s: the descriptor is not an OVF Envelope (root element %s)"
                                  % (self.location, envelope.tag))
        return [self._confined(item.get(OVF_NS + "href") or "") for item in envelope.iter(OVF_NS + "File")]

    def _confined(self, href):
        """href, if it names a file inside the package: never an absolute path, a URL or a way up (..)."""
        parts = href.replace("\\", "/").split("/")
        if not href or href.startswith("/") or urlsplit(href).scheme or ".." in parts or os.path.isabs(href):
            raise RayVsphereError("OVF source %s: the descriptor references %r, which is outside the package: "
                                  "a File href must be a relative path inside it" % (self.location, href))
        return href

    def _referenced_files(self, archive_sizes):
        files = {}
        for href in self._hrefs(self.descriptor):
            if archive_sizes is not None:
                size = archive_sizes.get(href)
            else:
                file_path = os.path.join(self._ovf_dir, href)
                size = os.path.getsize(file_path) if os.path.isfile(file_path) else None
            if size is None:
                raise RayVsphereError("OVF source %s: the descriptor references %s, which is missing"
                                      % (self.location, href))
            files[href] = size
        return files

    def _manifest(self):
        """(name, text) of the package's manifest (the .mf beside the .ovf, DSP0243 5.1), or None."""
        if self._tar is not None:
            names = [name for name in self._tar.getnames() if name.endswith(".mf")]
            return (names[0], self._tar.extractfile(names[0]).read().decode("utf-8", "replace")) if names else None
        path = os.path.splitext(self._path)[0] + ".mf"
        return (os.path.basename(path), self._read_text(path)) if os.path.isfile(path) else None

    def _check_manifest(self):
        """Every file the manifest lists has the digest it gives, and every referenced file is listed.

        A package without a manifest is taken as it is: DSP0243 makes the manifest optional.
        Checked before anything is uploaded, so a damaged or altered image fails with a clear error.
        """
        manifest = self._manifest()
        if manifest is None:
            return
        name, text = manifest
        descriptor_name = os.path.basename(self._path) if self._tar is None else \
            [member for member in self._tar.getnames() if member.endswith(".ovf")][0]
        listed = {}
        for line in text.splitlines():
            match = MANIFEST_LINE.match(line.strip())
            if line.strip() and not match:
                raise RayVsphereError("OVF source %s: manifest %s has a line that is not ALGORITHM(file)= digest: %r"
                                      % (self.location, name, line.strip()))
            if match:
                listed[match.group("file")] = (match.group("algorithm").lower(), match.group("digest").lower())
        for href in [descriptor_name] + list(self.files):
            if href not in listed:
                raise RayVsphereError("OVF source %s: manifest %s does not list %s" % (self.location, name, href))
        for href, (algorithm, expected) in listed.items():
            if algorithm not in MANIFEST_ALGORITHMS:
                raise RayVsphereError("OVF source %s: manifest %s uses %s; SHA1, SHA256 and SHA512 are known"
                                      % (self.location, name, algorithm.upper()))
            digest = hashlib.new(algorithm)
            stream = self._open_member(href)
            try:
                for chunk in iter(lambda: stream.read(CHUNK), b""):
                    digest.update(chunk)
            finally:
                stream.close()
            if digest.hexdigest() != expected:
                raise RayVsphereError("OVF source %s: %s's %s is %s, not the %s manifest %s gives: the image is "
                                      "damaged or was altered" % (self.location, href, algorithm.upper(),
                                                                  digest.hexdigest(), expected, name))

    def open_file(self, href):
        """A file of the package to upload."""
        return self._open_member(href)

    def _open_member(self, href):
        if self._tar is not None:
            return self._tar.extractfile(href)
        return open(os.path.join(self._ovf_dir, href), "rb")


def _unique(hrefs):
    """hrefs without repeats, in order: a file referenced twice is one file (as in OvfPackage.files)."""
    seen = set()
    return [href for href in hrefs if not (href in seen or seen.add(href))]


def _hash_files(paths):
    digest = hashlib.sha256()
    for file_path in paths:
        with open(file_path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


class HashCache(object):
    """Content hashes of local images, so an unchanged file is read once, not on every deploy.

    Keyed by each file's path, size, inode, mtime and ctime: any write
    changes ctime, which, unlike mtime, cannot be set back (touch -d, rsync -t).
    One small JSON file under the user's cache folder ($XDG_CACHE_HOME,
    else ~/.cache), holding the MAX_ENTRIES most recently used hashes. A
    cache that cannot be read or written is not used: it never fails a deploy.
    Writes go through a temp file and a rename, so concurrent runs lose at
    most an entry, never the file.
    """

    MAX_ENTRIES = 64

    def __init__(self, path=None):
        if path is None:
            cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            path = os.path.join(cache_home, "ray-vsphere", "ovf-sha256.json")
        self.path = path

    def sha256(self, paths, compute):
        """compute(paths) unless the cache holds the hash of these very files."""
        try:
            key = json.dumps([self._identity(path) for path in paths])
        except OSError:
            return compute(paths)  # the caller's own read reports the missing file
        entries = self._load()
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = dict(sha256=compute(paths))
        entry["used"] = time.time()
        newest = sorted(entries.items(), key=lambda item: item[1].get("used", 0), reverse=True)[:self.MAX_ENTRIES]
        self._save(dict(newest))
        return entry["sha256"]

    @staticmethod
    def _identity(path):
        stat = os.stat(path)
        return [os.path.realpath(path), stat.st_size, stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns]

    def _load(self):
        try:
            with open(self.path) as handle:
                entries = json.load(handle)
        except (OSError, ValueError):
            return {}
        if not isinstance(entries, dict):
            return {}
        return dict((key, entry) for key, entry in entries.items()
                    if isinstance(entry, dict) and isinstance(entry.get("sha256"), str))

    def _save(self, entries):
        try:
            folder = os.path.dirname(self.path)
            if not os.path.isdir(folder):
                os.makedirs(folder)
            handle, temp_path = tempfile.mkstemp(dir=folder, prefix=".ovf-sha256-")
            try:
                with os.fdopen(handle, "w") as out:
                    json.dump(entries, out)
                os.replace(temp_path, self.path)
            except BaseException:
                os.unlink(temp_path)
                raise
        except OSError:
            pass  # a read-only or full cache folder: the next deploy hashes again


def declared_properties(descriptor):
    """The keys of the OVF's ProductSection properties."""
    envelope = ElementTree.fromstring(descriptor)
    return [prop.get(OVF_NS + "key") for prop in envelope.iter(OVF_NS + "Property")]
