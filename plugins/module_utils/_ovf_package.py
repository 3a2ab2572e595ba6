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
import os
import shutil
import tarfile
import tempfile
from xml.etree import ElementTree

from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError
from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _ovf_manifest, _progress
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._image_hash_cache import hash_files
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_manifest import escapes
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_download import (
    OvfDownload, RangeFile, RangeIgnored, plain_http_problem)

OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"
SHA256_KEY = "sha256:"
# What comes before an OVA's disks (DSP0243 5.3: the descriptor first, then the manifest and certificate).
LEADING_MEMBERS = (".ovf", ".mf", ".cert")


class _NotCached(Exception):
    """The hash cache has no entry for these files (check mode does not read them to make one)."""


def _not_cached(paths):
    raise _NotCached()


class _ReadWhole(Exception):
    """The descriptor cannot be read alone (the server ignores Range, the OVA does not start with it): why."""


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

    def __init__(self, location, validate_certs=True, timeout=600, ca_path=None, sha256=None, hash_cache=None,
                 descriptor_only=False):
        self.location = location
        # Check mode: open() reads the descriptor (and manifest) only, see _open_descriptor.
        self._descriptor_only = descriptor_only
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
        self._leading = None  # an OVA's members up to its first disk, when only the descriptor is read
        self.ovf_dir = None
        self.descriptor_name = None
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
        if self._descriptor_only:
            cached = self._cached_hash()
            return SHA256_KEY + cached if cached else None
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
    def archive(self):
        """Whether the package is an OVA (a tar archive), once opened."""
        return self._tar is not None

    @property
    def pinned(self):
        """Whether ovf_sha256 was given: then a package without a manifest is taken."""
        return bool(self._expected_sha256)

    @property
    def content_hash(self):
        """The SHA-256 of the content; opened with descriptor_only, only what is known without reading it, or None."""
        if self._descriptor_only and self._content_hash is None and not self.downloaded:
            return self._expected_sha256 or self._cached_hash()
        if self._content_hash is None:
            paths = self._local_paths()
            if self._hash_cache is not None:
                self._content_hash = self._hash_cache.sha256(paths, hash_files)
            else:
                self._content_hash = hash_files(paths)
        return self._content_hash

    def open(self):
        if self.opened:
            return
        try:
            if self._descriptor_only:
                try:
                    self._open_descriptor()
                except _ReadWhole as reason:
                    self.close()
                    _progress.report("image", location=_progress.shown_location(self.location), warning=True,
                                     step="%s: reading the whole image to check it" % reason)
                    self._descriptor_only = False
                    self._open()
            else:
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
                names = [member.name for member in self._tar.getmembers()
                         if member.isfile() and member.name.endswith(".ovf")]
            except (tarfile.TarError, EOFError) as error:
                raise RayVsphereError("OVF source %s: the archive is damaged (%s)" % (self.location, error))
            if not names:
                raise RayVsphereError("OVF source %s: an archive without an .ovf descriptor" % self.location)
            self.descriptor_name = names[0]
            self.descriptor = self._descriptor_text(self._tar.extractfile(names[0]).read(), names[0])
            # Regular files only: a link member would make a name of the package read another.
            sizes = dict((member.name, member.size) for member in self._tar.getmembers() if member.isfile())
        elif path.endswith(".ova"):
            raise RayVsphereError("OVF source %s: not an OVA (a tar archive holding an .ovf descriptor)" % self.location)
        else:
            self.descriptor = self._read_descriptor(path)
            self.ovf_dir = os.path.dirname(os.path.abspath(path))
            self.descriptor_name = os.path.basename(path)
            sizes = None
        self._path = path
        self.files = self._referenced_files(sizes)
        _ovf_manifest.check_package(self)
        if self._expected_sha256 and self.content_hash != self._expected_sha256:
            raise RayVsphereError("OVF source %s: its SHA-256 is %s, not the %s ovf_sha256 gives"
                                  % (self.location, self.content_hash, self._expected_sha256))

    def _open_descriptor(self):
        """Check mode's read: the descriptor, and the manifest's digest of it; no disk is read.

        Of an OVA its leading members only (DSP0243: the descriptor first, then
        manifest and certificate), through tarfile, over HTTP Range requests
        (RangeFile) for a URL. Of an .ovf at a URL the descriptor and manifest,
        without the files it references. Not verified without the whole
        content: the disks' digests, and ovf_sha256 (but for a local file whose
        hash the hash cache knows). The deploy verifies both.
        """
        source = RangeFile(self._http, self.location) if self._is_url else None
        if source is None and not os.path.isfile(self.location):
            raise RayVsphereError("OVF source %s: no such file" % self.location)
        try:
            if source is not None:
                self._tar = tarfile.open(fileobj=source, mode="r:")
            elif tarfile.is_tarfile(self.location):
                self._tar = tarfile.open(self.location, mode="r:")
        except RangeIgnored:
            raise _ReadWhole("the server ignored the Range request (it answered 200, with the whole file)")
        except (tarfile.TarError, EOFError) as error:
            if urlsplit(self.location).path.endswith(".ova"):
                raise RayVsphereError("OVF source %s: the archive is damaged (%s)" % (self.location, error))
        if self._tar is not None:
            self._leading = []
            member = self._tar.next()
            while member is not None:
                self._leading.append(member)
                if not member.name.endswith(LEADING_MEMBERS):
                    break
                member = self._tar.next()
            names = [member.name for member in self._leading if member.isfile() and member.name.endswith(".ovf")]
            if not names:
                raise _ReadWhole("the OVA does not begin with its .ovf descriptor")
            self.descriptor_name, self._path = names[0], self.location
            data = self.open_file(names[0]).read()
            self._hrefs(self._descriptor_text(data, names[0]))  # the names are checked; the disks are not read
        else:
            path = self._fetch_descriptor() if self._is_url else self.location
            self.ovf_dir, self.descriptor_name, self._path = os.path.dirname(os.path.abspath(path)), \
                os.path.basename(path), path
            with open(path, "rb") as handle:
                data = handle.read()
            if not self._is_url:
                self.files = self._referenced_files(None)  # sizes, from the folder: nothing is read
            else:
                self._hrefs(self._descriptor_text(data, self.descriptor_name))
        self.descriptor = self._descriptor_text(data, self.descriptor_name)
        _ovf_manifest.check_descriptor(self, data)
        known = self._cached_hash()
        if self._expected_sha256 and known and known != self._expected_sha256:
            raise RayVsphereError("OVF source %s: its SHA-256 is %s, not the %s ovf_sha256 gives"
                                  % (self.location, known, self._expected_sha256))
        cost = "no disk read"
        if source is not None:
            cost = "%d Range request(s), %d KiB of the %d KiB file" % (source.requests, source.received // 1024,
                                                                       (source.size or 0) // 1024)
        _progress.report("image", location=_progress.shown_location(self.location),
                         step="checked its OVF descriptor only (%s)" % cost)

    def _fetch_descriptor(self):
        """An .ovf at a URL: the descriptor, and the manifest beside it where there is one, into a temp folder."""
        self._download_dir = tempfile.mkdtemp(prefix="ray-vsphere-ovf-")
        target = os.path.join(self._download_dir, os.path.basename(urlsplit(self.location).path) or "package.ovf")
        self._http.fetch(self.location, target, hashlib.sha256())
        manifest = os.path.splitext(os.path.basename(target))[0] + ".mf"
        self._http.fetch(urljoin(self.location, manifest), os.path.join(self._download_dir, manifest),
                         hashlib.sha256(), missing_ok=True)
        return target

    def _cached_hash(self):
        """The content hash of a local image as the hash cache knows it, without reading the image; or None."""
        if self._is_url or self._hash_cache is None:
            return None
        try:
            return self._hash_cache.sha256(self._local_paths() if self._path else [self.location], _not_cached)
        except _NotCached:
            return None

    def members(self):
        return self._leading if self._leading is not None else self._tar.getmembers()

    def _local_paths(self):
        if self._tar is not None:
            return [self._path]
        return [self._path] + [os.path.join(self.ovf_dir, href) for href in self.files]

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
            # The manifest beside it, where the server has one; not part of the content hash.
            manifest = os.path.splitext(os.path.basename(target))[0] + ".mf"
            self._http.fetch(urljoin(url, manifest), os.path.join(self._download_dir, manifest), hashlib.sha256(),
                             missing_ok=True)
        self._content_hash = digest.hexdigest()
        self.downloaded = True
        return target

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
        hrefs = [item.get(OVF_NS + "href") or "" for item in envelope.iter(OVF_NS + "File")]
        for href in hrefs:
            if escapes(href):
                raise RayVsphereError("OVF source %s: the descriptor references %r, which is outside the package: "
                                      "a File href must be a relative path inside it" % (self.location, href))
        return hrefs

    def regular_file(self, name):
        """Whether name is a regular file of the package: a file member of the OVA, or a file in the .ovf's folder.

        Not a link, device or folder, nor a symlink that leads out of the
        folder: what the package names is read and hashed, and its hash
        shown, so a name must not reach the machine's own files (/etc/shadow,
        /dev/zero, which never ends).
        """
        if self._tar is not None:
            return any(member.isfile() for member in self.members() if member.name == name)
        real = os.path.realpath(os.path.join(self.ovf_dir, name))
        return real.startswith(os.path.join(os.path.realpath(self.ovf_dir), "")) and os.path.isfile(real)

    def _referenced_files(self, archive_sizes):
        files = {}
        for href in self._hrefs(self.descriptor):
            if archive_sizes is not None:
                size = archive_sizes.get(href)
            else:
                file_path = os.path.join(self.ovf_dir, href)
                size = os.path.getsize(file_path) if self.regular_file(href) else None
                if size is None and os.path.lexists(file_path):
                    raise RayVsphereError("OVF source %s: the descriptor references %s, which is not a regular file "
                                          "inside the package (a symlink out of its folder, a device or a folder)"
                                          % (self.location, href))
            if size is None:
                raise RayVsphereError("OVF source %s: the descriptor references %s, which is missing"
                                      % (self.location, href))
            files[href] = size
        return files

    def open_file(self, href):
        """A file of the package: to upload, or to check against the manifest."""
        if self._leading is not None:  # by its TarInfo: a name would make tarfile read every header first
            return self._tar.extractfile([member for member in self._leading if member.name == href][-1])
        if self._tar is not None:
            return self._tar.extractfile(href)
        return open(os.path.join(self.ovf_dir, href), "rb")


def _unique(hrefs):
    """hrefs without repeats, in order: a file referenced twice is one file (as in OvfPackage.files)."""
    seen = set()
    return [href for href in hrefs if not (href in seen or seen.add(href))]


def declared_properties(descriptor):
    """The keys of the OVF's ProductSection properties."""
    envelope = ElementTree.fromstring(descriptor)
    return [prop.get(OVF_NS + "key") for prop in envelope.iter(OVF_NS + "Property")]
