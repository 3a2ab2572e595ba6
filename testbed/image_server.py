"""An HTTP(S) image server on 127.0.0.1 that counts requests and bytes and can throttle, for tests and benchmarks.

It answers a single-range GET (Range: bytes=a-b, a-, -n) with 206 Partial
Content and its Content-Range, as nginx, Apache and object stores do
(RFC 9110 14), and anything else it cannot satisfy with 416; with
honour_range=False it ignores Range and sends the whole file (200), as a
server without range support does. http.server does neither by itself.
"""

import collections
import functools
import http.server
import os
import re
import ssl
import threading
import time

from testbed import pki


def loopback_tls(directory):
    """(server SSLContext, CA certificate file) for serving on 127.0.0.1, from a fresh testbed CA (pki).

    Images are served over https, with the CA given to node_deploy as
    ovf_ca_path, as over plain http an image needs its ovf_sha256.
    """
    ca = pki.make_ca(directory)
    pair = pki.issue_server_certificate(ca, directory, ["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.certificate, pair.key)
    return context, ca.certificate


class ImageServer:
    """http(s)://127.0.0.1:<port>/ serving `folder`; `requests` counts (method, path).

    tls_context: an ssl.SSLContext to serve HTTPS with. rate: bytes per
    second per response, for a download that costs what a real uplink's does.
    Its `redirects`, {name: URL}, are answered with a 302 to that URL instead
    of a file: a dict a test fills once the servers of a chain have their ports.
    """

    def __init__(self, folder, tls_context=None, rate=None, honour_range=True):
        self.requests = collections.Counter()
        self.sent = collections.Counter()  # body bytes written, by path
        lock = threading.Lock()
        requests, sent_bytes = self.requests, self.sent

        moved = self.redirects = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    requests["GET", self.path] += 1
                if not self.redirect() and not (honour_range and self.partial()):
                    super().do_GET()

            def partial(self):
                """A 206 (or 416) for a GET with one byte range of a file; False to answer as without Range."""
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range") or "")
                path = self.translate_path(self.path)
                if not match or match.groups() == ("", "") or not os.path.isfile(path):
                    return False  # no Range, several ranges, or no file: the whole answer (or 404)
                size = os.path.getsize(path)
                first, last = match.groups()
                if first:
                    start, end = int(first), min(int(last), size - 1) if last else size - 1
                else:
                    start, end = max(size - int(last), 0), size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(path))
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Last-Modified", self.date_time_string(int(os.path.getmtime(path))))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                with open(path, "rb") as source:
                    source.seek(start)
                    self.copyfile(_Limited(source, end - start + 1), self.wfile)
                return True

            def do_HEAD(self):
                with lock:
                    requests["HEAD", self.path] += 1
                self.redirect() or super().do_HEAD()

            def redirect(self):
                target = moved.get(self.path[1:])
                if target is None:
                    return False
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def copyfile(self, source, outputfile):
                started, sent = time.monotonic(), 0
                try:
                    while chunk := source.read(1024 * 1024):
                        outputfile.write(chunk)
                        sent += len(chunk)
                        ahead = started + sent / rate - time.monotonic() if rate else 0
                        if ahead > 0:
                            time.sleep(ahead)
                finally:
                    with lock:
                        sent_bytes[self.path] += sent
                return None

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls_context else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name):
        return f"{self.scheme}://127.0.0.1:{self.server.server_port}/{name}"

    def count(self, method, name):
        return self.requests[method, f"/{name}"]

    def bytes_sent(self, name):
        """Body bytes written for `name`, whole files and ranges (what a client that hangs up got, at most)."""
        return self.sent[f"/{name}"]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Limited:
    """The next `left` bytes of a file object."""

    def __init__(self, source, left):
        self.source, self.left = source, left

    def read(self, size):
        data = self.source.read(min(size, self.left))
        self.left -= len(data)
        return data
