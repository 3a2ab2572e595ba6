"""The provider's own vCenter session: bounded calls, and a back-off after a rejected login.

A Ray head runs for weeks. In that time vCenter gets slow, restarts, and its
passwords get rotated. So:

- every call is bounded by the client's request_timeout (see
  _client.VcenterClient), and a call that timed out keeps the session: pyVmomi
  drops the stuck connection itself, and a logout would only hang as well;
- a session vCenter ended (NotAuthenticated: expired, terminated, vCenter
  restarted) or a dropped connection is replaced by one new login, once per call;
- a rejected login is not retried at once: vCenter SSO locks an account after
  5 failed logins by default (its lockout policy: "Maximum number of failed
  login attempts" 5, within 180 s), so the next attempt waits LoginBackoff's
  delay, at least a minute and doubling to ten, whoever asks. The playbook
  runs of the provider log in with the same password, so they wait too.
"""

import logging
import socket
import threading
import time

from ansible_collections.ray_vsphere.cluster.plugins.module_utils._client import RayVsphereError, VcenterClient

try:
    from pyVmomi import vim
except ImportError:  # pragma: no cover - a dependency of the package
    raise

logger = logging.getLogger(__name__)


class LoginDeferred(RuntimeError):
    """No login now: vCenter rejected the last one and its back-off has not passed."""


class VcenterUnresponsive(RuntimeError):
    """vCenter did not answer within the request timeout."""


class LoginBackoff:
    """When the next login may be tried after vCenter rejected one.

    The waits are first_wait_s, then twice as long each time, up to
    longest_wait_s: with the defaults a wrong password costs logins at 0 s,
    60 s and 180 s, then at 7, 15 and 25 minutes (three in the first five
    minutes, fewer than SSO's default lockout of five). A login that
    succeeds resets it. `clock` is injectable so tests can run hours of it.
    """

    FIRST_WAIT_S = 60.0
    LONGEST_WAIT_S = 600.0

    def __init__(self, first_wait_s=FIRST_WAIT_S, longest_wait_s=LONGEST_WAIT_S, clock=time.monotonic):
        self.first_wait_s = first_wait_s
        self.longest_wait_s = longest_wait_s
        self.clock = clock
        self.rejections = 0
        self.next_attempt_at = float("-inf")
        self._lock = threading.Lock()

    def wait_after(self, rejections):
        """Seconds to wait after the given number of rejected logins in a row."""
        return min(self.first_wait_s * 2 ** (rejections - 1), self.longest_wait_s)

    def seconds_left(self):
        with self._lock:
            return max(0.0, self.next_attempt_at - self.clock())

    def check(self, who):
        """Raise LoginDeferred while a login must not be tried."""
        left = self.seconds_left()
        if left > 0:
            raise LoginDeferred(f"vCenter rejected the login of {who} {self.rejections} time(s) in a row; "
                                f"not trying again for {left:.0f} s (so that vCenter does not lock the account)")

    def rejected(self):
        """Record a rejected login; the seconds until the next may be tried."""
        with self._lock:
            self.rejections += 1
            wait = self.wait_after(self.rejections)
            self.next_attempt_at = self.clock() + wait
            return wait

    def accepted(self):
        with self._lock:
            self.rejections = 0
            self.next_attempt_at = float("-inf")


class VcenterSession:
    """One logged-in client, reused across calls; call(work) runs work(service_instance)."""

    def __init__(self, credentials, request_timeout, backoff=None, client_factory=VcenterClient):
        self.credentials = credentials
        self.request_timeout = request_timeout
        self.backoff = backoff or LoginBackoff()
        self.logins = 0
        self._client_factory = client_factory
        self._client = None
        self._lock = threading.Lock()

    @property
    def who(self):
        return f"{self.credentials.username} at {self.credentials.hostname}:{self.credentials.port}"

    def call(self, work):
        """work(service_instance) on the session, logging in (again) where needed.

        Raises LoginDeferred in a back-off, RayVsphereError when the login
        fails, VcenterUnresponsive after request_timeout without an answer.
        """
        for attempt in (1, 2):
            client = self._logged_in()
            try:
                return work(client.service_instance)
            except socket.timeout as error:
                raise VcenterUnresponsive(f"vCenter {self.credentials.hostname}:{self.credentials.port} did not "
                                          f"answer within {self.request_timeout} s") from error
            except vim.fault.InvalidLogin as error:
                # The client logs in again by itself when vCenter ends its session
                # (_client's session stub); with a rotated password that login is
                # refused here, mid-call, and must start the back-off like any other.
                self._drop(client)
                self.note_rejected_login(f"vCenter {self.who} rejected the login again: {error.msg or 'InvalidLogin'}")
                raise
            except (vim.fault.NotAuthenticated, ConnectionError, OSError) as error:
                # The session ended on the server, or the connection did: one new login.
                self._drop(client)
                if attempt == 2:
                    raise
                logger.info("ray_vsphere: vCenter session lost (%s); logging in again", type(error).__name__)
        raise AssertionError("unreachable")

    def _logged_in(self):
        with self._lock:
            if self._client is not None:
                return self._client
            self.backoff.check(self.who)
            self.logins += 1
            client = self._client_factory(self.credentials.hostname, self.credentials.username,
                                          self.credentials.password, port=self.credentials.port,
                                          validate_certs=self.credentials.validate_certs,
                                          request_timeout=self.request_timeout, ca_path=self.credentials.ca_path,
                                          proxy_host=self.credentials.proxy_host,
                                          proxy_port=self.credentials.proxy_port)
            try:
                client.connect()
            except RayVsphereError as error:
                if error.details.get("fault") == "InvalidLogin":
                    self.note_rejected_login(str(error))
                if error.details.get("timed_out"):
                    raise VcenterUnresponsive(str(error)) from error
                raise
            self.backoff.accepted()
            self._client = client
            return client

    def note_rejected_login(self, message):
        """A login with these credentials was rejected (here, or by a playbook run): back off, say so once."""
        wait = self.backoff.rejected()
        logger.warning("ray_vsphere: %s; login attempt %d failed, next attempt in %.0f s", message,
                       self.backoff.rejections, wait)

    def _drop(self, client):
        """Forget a client whose session or connection is gone, without a logout that could hang."""
        with self._lock:
            if self._client is client:
                self._client = None

    def close(self):
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
