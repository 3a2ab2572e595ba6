# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The SHA-256 of a local image's files, and a cache of it so an unchanged image is not read again.

OvfPackage (_ovf_package.py) decides which files make an image's content.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import tempfile
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._ovf_download import CHUNK


def hash_files(paths):
    """The SHA-256 of these files read one after the other."""
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
