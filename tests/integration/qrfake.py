"""qrfake - start and steer the fake upstream (tests/fake/fakeq.py).

    from qrfake import FakeUpstream
    fake = FakeUpstream()                 # started, listening
    rt = fake.add_account(kind="social")  # a refresh token it accepts
    fake.script({"events": [{"text": "hi"}], "chunk": 1})
    d = Daemon(upstream=fake)             # qrtest.Daemon
    ...
    fake.requests()                       # what reached the fake

The fake runs as its own process on a free loopback port; it is
registered with qrtest like a daemon, so the runner kills it when the
test ends (or hangs).  Also usable as a context manager.

Python 3 standard library only.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import qrtest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEQ = os.path.join(os.path.dirname(HERE), "fake", "fakeq.py")
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "streams")


class _Url(str):
    """The base URL; usable both as fake.url and fake.url()."""

    def __call__(self):
        return str(self)


class FakeError(qrtest.TestFailure):
    pass


class FakeUpstream:
    """One fakeq process.

    FakeUpstream(start=True, quiet=False, config=None)
    """

    def __init__(self, start=True, quiet=False, config=None, port=None):
        self.tmp = tempfile.mkdtemp(prefix="qrfake-")
        self.port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "fakeq.log")
        self.quiet = quiet
        self.want_port = port
        self.port = None
        self.url = None
        self.proc = None
        self.pid = None
        self._log = None
        self._conn = None
        self._initial_config = dict(config or {})
        qrtest._daemons.append(self)
        if start:
            self.start()

    # -- life cycle -----------------------------------------------------
    def start(self, timeout=10.0):
        self._log = open(self.log_path, "ab")
        argv = [sys.executable, FAKEQ, "--port-file", self.port_file]
        if self.want_port:
            argv += ["--port", str(self.want_port)]
        if self.quiet:
            argv.append("--quiet")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     cwd=self.tmp)
        self.pid = self.proc.pid
        reg = os.environ.get("QRTEST_REGISTRY")
        if reg:
            with open(reg, "a") as f:
                f.write("%d %s\n" % (self.pid, self.tmp))

        def ready():
            if self.proc.poll() is not None:
                raise FakeError("fakeq exited with %s before listening: %s"
                                % (self.proc.returncode, self.log()[-2000:]))
            try:
                with open(self.port_file) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        self.port = qrtest.wait_for(ready, timeout, what="fakeq port file")
        self.url = _Url("http://127.0.0.1:%d" % self.port)
        if self._initial_config:
            self.config(**self._initial_config)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM; returns the exit status (0 on a clean exit)."""
        self._drop_conn()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._close_log()
        return self.proc.returncode

    def kill(self):
        self._drop_conn()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def cleanup(self):
        self.kill()
        if self in qrtest._daemons:
            qrtest._daemons.remove(self)
        if not os.environ.get("QRTEST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def all_descendants(self):
        return []

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    # -- logs (the runner prints them when a test fails) ---------------
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        lines = self.log().splitlines()
        return "--- %s (last %d lines)\n%s" % (self.log_path, n,
                                               "\n".join(lines[-n:]))

    # -- HTTP to the control endpoints ----------------------------------
    def _drop_conn(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def call(self, method, path, body=None, ok=(200,)):
        """One JSON request on the kept-alive control connection;
        returns the decoded answer."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data is not None \
            else {}
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1",
                                                        self.port,
                                                        timeout=10)
            try:
                self._conn.request(method, path, data, hdrs)
                r = self._conn.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self._drop_conn()
                if attempt == 2:
                    raise
        try:
            j = json.loads(raw) if raw else None
        except ValueError:
            j = raw.decode("utf-8", "replace")
        if ok and r.status not in ok:
            raise FakeError("fakeq %s %s: %d %r" % (method, path, r.status,
                                                    j))
        return j

    # -- scripting --------------------------------------------------------
    def script(self, *responses):
        """Queue responses (R objects; see tests/fake/README).  Also
        accepts one list.  Returns the queue length."""
        if len(responses) == 1 and isinstance(responses[0], list):
            responses = responses[0]
        return self.call("POST", "/_fake/script",
                         {"responses": list(responses)})["queued"]

    def pending_script(self):
        return self.call("GET", "/_fake/script")

    def requests(self, path=None, since=0):
        """Recorded requests to the upstream endpoints, in order;
        path= keeps only those to that path."""
        out = self.call("GET", "/_fake/requests?since=%d" % since)
        if path is not None:
            out = [r for r in out if r["path"] == path]
        return out

    def assistant_requests(self):
        """Requests to either generateAssistantResponse flavour."""
        return [r for r in self.requests()
                if r["path"] == "/generateAssistantResponse" or
                (r["path"] == "/" and (r.get("target") or "").endswith(
                    ".GenerateAssistantResponse"))]

    def wait_requests(self, n, path=None, timeout=5.0):
        """Wait until at least n requests (to path) were recorded."""
        return qrtest.wait_for(
            lambda: (lambda rs: rs if len(rs) >= n else None)(
                self.requests(path)),
            timeout, what="%d requests at the fake%s"
            % (n, (" to " + path) if path else ""))

    def reset(self):
        self.call("POST", "/_fake/reset", {})

    def config(self, **kw):
        """Change fake settings (too_long_bytes, device_interval,
        device_expires_in, default, max_records, accept_any_token,
        strict, quiet); returns the whole config."""
        return self.call("POST", "/_fake/config", kw)

    def stats(self):
        return self.call("GET", "/_fake/stats")

    # -- accounts and tokens --------------------------------------------
    _KEYMAP = {"refresh_token": "refreshToken", "client_id": "clientId",
               "client_secret": "clientSecret", "profile_arn": "profileArn",
               "expires_in": "expiresIn"}

    def add_account(self, **kw):
        """Register a refresh token (kind="idc"|"social", refreshToken,
        clientId, clientSecret, profileArn, expiresIn, rotate, fail,
        usage, email; snake_case spellings accepted).  Returns the
        refresh token (generated if not given)."""
        body = {self._KEYMAP.get(k, k): v for k, v in kw.items()}
        return self.call("POST", "/_fake/accounts", body)["refreshToken"]

    def accounts(self):
        return self.call("GET", "/_fake/accounts")

    def account(self, rt):
        for a in self.accounts():
            if a["refreshToken"] == rt:
                return a
        return None

    def revoke(self, rt):
        return self.call("POST", "/_fake/accounts/revoke",
                         {"refreshToken": rt})

    def issue_token(self, rt, expires_in=None):
        """An access token for account rt, issued without a refresh."""
        body = {"refreshToken": rt}
        if expires_in is not None:
            body["expiresIn"] = expires_in
        return self.call("POST", "/_fake/tokens", body)["accessToken"]

    def expire_tokens(self, access_token=None, refresh_token=None):
        """Make issued access tokens (all, one, or one account's)
        invalid now; returns how many were still valid."""
        body = {}
        if access_token:
            body["accessToken"] = access_token
        if refresh_token:
            body["refreshToken"] = refresh_token
        return self.call("POST", "/_fake/tokens/expire", body)["expired"]

    def device(self, action, user_code=None):
        """Steer the device flow: approve / deny / slow_down / expire
        the latest pending authorization (or the one of user_code)."""
        body = {"action": action}
        if user_code:
            body["userCode"] = user_code
        return self.call("POST", "/_fake/device", body)


def fixture(name):
    """Path of a recording in tests/fixtures/streams."""
    return os.path.join(FIXTURES, name)
