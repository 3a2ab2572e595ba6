# -*- coding: utf-8 -*-
# Copyright: (c) 2026, ray-vsphere maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""An OVF or OVA over http(s): the requests, what a redirect may not do, the URL's validators, and errors.

OvfPackage (_ovf_package.py) decides what to download and where it goes; this
says how, and what names the content without downloading it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import ssl

from ansible.module_utils.six.moves.urllib.error import HTTPError
from ansible.module_utils.six.moves.urllib.parse import urljoin, urlsplit, urlunsplit
from ansible.module_utils.urls import open_url

from ansible_collections.ray_vsphere.cluster.plugins.module_utils import _progress
from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError

CHUNK = 1024 * 1024
# As many as urllib follows.
MAX_REDIRECTS = 10
# What one Range request asks for at least: an OVA's first tar header, its descriptor and manifest, in one go.
READ_AHEAD = 64 * 1024
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class RangeIgnored(Exception):
    """The server answered a Range request with the whole file (200), as a server without range support does."""


def plain_http_problem(location, sha256):
    """Why an image at location cannot be taken as it is, or None.

    Over plain http anyone on the way can swap the image, and it becomes the
    system of every node: only the hash the caller gives makes that
    detectable. https (with its certificate checked) and local files are
    taken as they are.
    """
    if urlsplit(location).scheme.lower() == "http" and not sha256:
        return ("%s is plain http, so the image could be swapped on its way: give its ovf_sha256 "
                "(the download is then checked against it), or serve it over https" % location)
    return None


class OvfDownload(object):
    """The http(s) requests for the OVF source at `location`: HEAD for its key, GETs into files.

    Errors name the source and the request, and say what to set when TLS fails.
    """

    def __init__(self, location, validate_certs, ca_path, timeout, expected_sha256):
        self.location = location
        self._validate_certs = validate_certs
        self._ca_path = ca_path
        self._timeout = timeout
        self._expected_sha256 = expected_sha256

    def _request(self, url, method, headers=None):
        """The response to `method url`, redirects followed one hop at a time.

        urllib would follow them all and show only the last URL: a chain
        https -> http -> https looks safe there, yet its middle hop came
        over plain http and could have sent anywhere. Each hop's URL is
        checked before it is requested, so an image that needs its
        ovf_sha256 over http is refused before a byte of it comes.
        """
        chain = [url]
        while True:
            try:
                return open_url(chain[-1], method=method, validate_certs=self._validate_certs, headers=headers,
                                ca_path=self._ca_path, timeout=self._timeout, follow_redirects="none")
            except HTTPError as error:
                location = error.info().get("Location") if 300 <= error.code < 400 else None
                if not location:
                    raise
                error.close()
            hop = urljoin(chain[-1], location)
            chain.append(hop)
            if urlsplit(hop).scheme.lower() not in ("http", "https"):
                # urllib's opener also reads file:// and ftp://: a server must not point it at this machine's files.
                raise RayVsphereError("OVF source %s: %s %s was redirected to %s, which is not an http(s) URL "
                                      "(redirects: %s)" % (self.location, method, url, hop, " -> ".join(chain)))
            downgraded = plain_http_problem(hop, self._expected_sha256)
            if downgraded:
                raise RayVsphereError("OVF source %s: %s %s was redirected: %s (redirects: %s)"
                                      % (self.location, method, url, downgraded, " -> ".join(chain)))
            if len(chain) > MAX_REDIRECTS + 1:
                raise RayVsphereError("OVF source %s: %s %s was redirected more than %d times (redirects: %s)"
                                      % (self.location, method, url, MAX_REDIRECTS, " -> ".join(chain)))

    def _failure(self, url, method, error):
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLError):
            return RayVsphereError(
                "OVF source %s: TLS with %s failed (%s): %s. Give the CA bundle that signed the "
                "server's certificate in ovf_ca_path, or set ovf_validate_certs: false (vCenter's validate_certs "
                "does not apply to the image)" % (self.location, url, method, reason))
        return RayVsphereError("OVF source %s: %s %s failed: %s" % (self.location, method, url, error))

    def head_key(self):
        """The URL's key from a HEAD request; None when the server refuses HEAD.

        Such as 405, or a presigned URL, which signs GET only: the image is
        then downloaded and hashed. TLS and connection errors are errors.
        """
        try:
            response = self._request(self.location, "HEAD")
        except RayVsphereError:
            raise
        except HTTPError:
            return None
        except Exception as error:  # pylint: disable=broad-except
            raise self._failure(self.location, "HEAD", error)
        response.close()
        return self.validators_key(response.headers)

    def validators_key(self, headers):
        """'<url> etag=... last-modified=... length=...', or None when the headers do not name one content.

        Enough: a strong ETag (one exact representation, RFC 9110 8.8.3), or
        Last-Modified with Content-Length (what wget -N and curl -z trust; a
        file replaced within the same second by one of the same size goes
        unnoticed: give ovf_sha256 where that can happen). A weak ETag (W/)
        only promises equivalent content and is ignored. The URL is the one
        asked for, not a redirect's target, which may be signed anew on every
        request; it is kept without user and password, and a query string only
        as its hash: the key is recorded in vCenter.
        """
        etag = headers.get("ETag")
        if etag and etag.startswith("W/"):
            etag = None
        last_modified, length = headers.get("Last-Modified"), headers.get("Content-Length")
        if not (etag or (last_modified and length)):
            return None
        parts = urlsplit(self.location)
        netloc = parts.hostname + (":%d" % parts.port if parts.port else "")
        query = "query-sha256=" + hashlib.sha256(parts.query.encode("utf-8")).hexdigest()[:16] if parts.query else ""
        url = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
        return " ".join([url] + ["%s=%s" % (name, value) for name, value in
                                 (("etag", etag), ("last-modified", last_modified), ("length", length)) if value])

    def fetch(self, url, target, digest, missing_ok=False):
        """Download url into target, feeding digest; the response's headers (None: missing_ok and no such file).

        No such file: 404 or 410, or 403, which object stores such as S3
        answer for a missing key to whoever may not list the bucket.
        """
        try:
            response = self._request(url, "GET")
        except RayVsphereError:
            raise
        except HTTPError as error:
            if missing_ok and error.code in (403, 404, 410):
                return None
            raise self._failure(url, "GET", error)
        except Exception as error:  # pylint: disable=broad-except
            raise self._failure(url, "GET", error)
        try:
            if not os.path.isdir(os.path.dirname(target)):
                os.makedirs(os.path.dirname(target))
            length = response.headers.get("Content-Length")
            watched = _progress.Transfer("download", _progress.shown_location(url), int(length) if length else 0)
            received = 0
            with open(target, "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    watched.sent(received)
            watched.sent(received, final=True)
        except Exception as error:  # pylint: disable=broad-except
            raise self._failure(url, "GET", error)
        finally:
            response.close()
        return response.headers


class RangeFile(object):
    """The file at a URL as a read-only, seekable file, each read a GET with a Range header (RFC 9110 14.2).

    For tarfile, which then reads an OVA's headers and its first members
    without the disks that follow: READ_AHEAD bytes or more per request.
    `requests` and `received` count what it cost. A first answer of 200
    instead of 206 raises RangeIgnored, having read none of its body.
    """

    def __init__(self, download, url):
        self._download = download
        self.url = url
        self.name = url
        self.size = None
        self.requests = 0
        self.received = 0
        self._position = 0
        self._buffer_start = 0
        self._buffer = b""

    def tell(self):
        return self._position

    def seek(self, offset, whence=os.SEEK_SET):
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence == os.SEEK_END:
            offset += self._fetched_size()
        self._position = max(offset, 0)
        return self._position

    def read(self, size=-1):
        if size is None or size < 0:
            size = self._fetched_size() - self._position
        start = self._position - self._buffer_start
        if start < 0 or start + size > len(self._buffer):
            self._fetch(self._position, max(size, READ_AHEAD))
            start = 0
        data = self._buffer[start:start + size]
        self._position += len(data)
        return data

    def close(self):
        self._buffer = b""

    def _fetched_size(self):
        if self.size is None:
            self._fetch(0, READ_AHEAD)
        return self.size

    def _fetch(self, offset, length):
        if self.size is not None and offset >= self.size:
            self._buffer_start, self._buffer = offset, b""
            return
        headers = {"Range": "bytes=%d-%d" % (offset, offset + length - 1)}
        try:
            response = self._download._request(self.url, "GET", headers)
        except RayVsphereError:
            raise
        except HTTPError as error:
            if error.code == 416:  # past the end
                self._buffer_start, self._buffer = offset, b""
                return
            raise self._download._failure(self.url, "GET (Range %s)" % headers["Range"], error)
        except Exception as error:  # pylint: disable=broad-except
            raise self._download._failure(self.url, "GET (Range %s)" % headers["Range"], error)
        try:
            self.requests += 1
            if response.getcode() != 206:
                raise RangeIgnored()
            match = CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != offset:
                raise RayVsphereError("OVF source %s: GET with Range %s was answered with Content-Range %r"
                                      % (self._download.location, headers["Range"],
                                         response.headers.get("Content-Range")))
            if match.group(3) != "*":
                self.size = int(match.group(3))
            data = response.read(length)
        finally:
            response.close()
        self.received += len(data)
        self._buffer_start, self._buffer = offset, data
