"""An HTTP(S) image server on 127.0.0.1 that counts requests and can throttle, for tests and benchmarks."""

import collections
import functools
import http.server
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

    def __init__(self, folder, tls_context=None, rate=None):
        self.requests = collections.Counter()
        lock = threading.Lock()
        requests = self.requests

        moved = self.redirects = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    requests["GET", self.path] += 1
                self.redirect() or super().do_GET()

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
                if rate is None:
                    return super().copyfile(source, outputfile)
                started, sent = time.monotonic(), 0
                while chunk := source.read(1024 * 1024):
                    outputfile.write(chunk)
                    sent += len(chunk)
                    ahead = started + sent / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
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

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
