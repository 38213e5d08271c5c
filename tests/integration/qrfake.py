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


    # -- pool work (issue 4) ----------------------------------------------
    def set_usage(self, account, used=None, limit=None, next_reset=None,
                  subscription=None, email=None, free_trial=None):
        """What getUsageLimits answers for an account (its refresh
        token, first refresh token or label): credits used and limit,
        nextDateReset (epoch s), subscription title, email.  Setting
        used restarts the count; metered credits add to it."""
        body = {"refreshToken": account}
        for k, v in (("used", used), ("limit", limit),
                     ("nextDateReset", next_reset),
                     ("subscription", subscription), ("email", email),
                     ("freeTrial", free_trial)):
            if v is not None:
                body[k] = v
        return self.call("POST", "/_fake/usage", body)

    def refresh_stats(self):
        """{"refresh_total", "refresh_parallel" (now),
        "refresh_max_parallel", "refresh_overlap_same_account",
        "refresh_overlap_accounts", "refresh_by_account" {label or
        first refresh token: n}}."""
        s = self.stats()
        return {k: v for k, v in s.items() if k.startswith("refresh_")}

    def reset_stats(self):
        self.call("POST", "/_fake/stats/reset", {})

    def by_label(self, requests):
        """[label (or first refresh token) of each request]."""
        return [r.get("label") or r.get("aid") or r.get("account")
                for r in requests]

    def assistant_calls(self, since=0):
        """Assistant requests recorded after seq `since`."""
        return [r for r in self.requests(since=since + 1 if since else 0)
                if r["path"] == "/generateAssistantResponse" or
                (r["path"] == "/" and (r.get("target") or "").endswith(
                    ".GenerateAssistantResponse"))]

    def refresh_calls(self, since=0):
        """Refresh requests (OIDC refresh_token grants, Kiro
        /refreshToken) recorded after seq `since`."""
        out = []
        for r in self.requests(since=since + 1 if since else 0):
            b = r.get("body")
            if not isinstance(b, dict):
                continue
            if r["path"] == "/refreshToken" or (
                    r["path"] == "/token" and
                    b.get("grantType") == "refresh_token"):
                out.append(r)
        return out

    def last_seq(self):
        rs = self.requests()
        return rs[-1]["seq"] if rs else 0


class FakeProxy:
    """One tests/fake/proxy.py process: an HTTP (absolute form and
    CONNECT) and SOCKS5 proxy on one loopback port, counting what went
    through it.  user/password: require them (Basic, RFC 1929)."""

    PROXY = os.path.join(os.path.dirname(HERE), "fake", "proxy.py")

    def __init__(self, user=None, password=None, quiet=True):
        self.tmp = tempfile.mkdtemp(prefix="qrproxy-")
        self.port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "proxy.log")
        self.user, self.password = user, password
        self._log = open(self.log_path, "ab")
        argv = [sys.executable, self.PROXY, "--port-file", self.port_file]
        if user:
            argv += ["--user", user, "--password", password or ""]
        if quiet:
            argv.append("--quiet")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     cwd=self.tmp)
        self.pid = self.proc.pid
        qrtest._daemons.append(self)
        reg = os.environ.get("QRTEST_REGISTRY")
        if reg:
            with open(reg, "a") as f:
                f.write("%d %s\n" % (self.pid, self.tmp))

        def ready():
            if self.proc.poll() is not None:
                raise FakeError("proxy.py exited with %s: %s"
                                % (self.proc.returncode, self.log()[-2000:]))
            try:
                with open(self.port_file) as f:
                    return int(f.read().strip() or 0)
            except (OSError, ValueError):
                return 0
        self.port = qrtest.wait_for(ready, 10, what="proxy port file")

    def url(self, scheme="http"):
        """scheme://[user:password@]127.0.0.1:port"""
        cred = ""
        if self.user:
            import urllib.parse
            cred = "%s:%s@" % (urllib.parse.quote(self.user, safe=""),
                               urllib.parse.quote(self.password or "",
                                                  safe=""))
        return "%s://%s127.0.0.1:%d" % (scheme, cred, self.port)

    def _call(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, b"" if method == "POST" else None)
            r = c.getresponse()
            return json.loads(r.read())
        finally:
            c.close()

    def stats(self):
        """{"connections", "http_requests", "connects", "socks",
        "auth_failures", "errors", "by_user", "by_target", "log"}"""
        return self._call("GET", "/_proxy/stats")

    def reset(self):
        return self._call("POST", "/_proxy/reset")

    def out_ports(self):
        """Local ports of the proxy's onward connections: a request the
        fake recorded with one of these as "peer_port" came through."""
        return {e["out_port"] for e in self.stats()["log"]
                if e.get("out_port")}

    def used(self):
        """Requests and tunnels that went through (not control calls)."""
        s = self.stats()
        return s["http_requests"] + s["connects"] + s["socks"]

    # the runner's interface (as FakeUpstream)
    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self._log:
            self._log.close()
            self._log = None

    def cleanup(self):
        self.kill()
        if self in qrtest._daemons:
            qrtest._daemons.remove(self)
        if not os.environ.get("QRTEST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def all_descendants(self):
        return []

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


def fixture(name):
    """Path of a recording in tests/fixtures/streams."""
    return os.path.join(FIXTURES, name)


# ---------------------------------------------------------------------
# an account pool in front of the fake (issue 4's tests)

def anth_body(text="hi", stream=False, **kw):
    b = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024,
         "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    b.update(kw)
    return b


def oa_body(text="hi", stream=False, **kw):
    b = {"model": "claude-sonnet-4.5",
         "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    b.update(kw)
    return b


class Pool:
    """A fake upstream, a daemon pointed at it, n accounts (labels
    a0..a{n-1}, registered at the fake under the same labels, so the
    fake's records say which account made each call), an admin session
    (tok) and a client key (key).

    Pool(n=2, kind="idc", workers=2, top=None, settings=None,
         extra=None, wait=True, fake_config=None, env=None)
    extra: {label: {POST /v2/accounts fields: proxy, maxConcurrency,
    rpm, ...}}; settings: PUT /v2/settings before the test.
    """

    def __init__(self, n=2, kind="idc", workers=2, top=None, settings=None,
                 extra=None, wait=True, fake_config=None, env=None):
        self.fake = FakeUpstream(quiet=True, config=fake_config)
        self.d = qrtest.Daemon(upstream=self.fake, workers=workers,
                               top=dict(top or {}), env=env)
        self.tok = self.d.login()
        self.key = self.d.add_key(self.tok)["key"]
        self.rt, self.id = {}, {}
        extra = extra or {}
        for i in range(n):
            lab = "a%d" % i
            self.add(lab, kind=kind, **extra.get(lab, {}))
        if settings:
            self.settings(**settings)
        if wait and n:
            self.wait_ready()

    # -- accounts -----------------------------------------------------------
    def add(self, label, kind="idc", status=(201,), **fields):
        """Register an account at the fake and add it to the daemon;
        returns the daemon's answer (JSON)."""
        spec = {"kind": kind, "label": label}
        body = {"type": kind, "label": label, "region": "us-east-1"}
        if kind == "idc":
            spec.update(clientId="cid-" + label, clientSecret="csec-" + label)
            body.update(clientId="cid-" + label, clientSecret="csec-" + label)
        rt = self.fake.add_account(**spec)
        body["refreshToken"] = rt
        body.update(fields)
        r = self.d.admin("POST", "/v2/accounts", self.tok, body)
        qrtest.check(r.status in status, "POST /v2/accounts %s: %d %r"
                     % (label, r.status, r.body))
        j = r.json()
        self.rt[label] = rt
        self.id[label] = j["id"]
        return j

    def label_of(self, aid):
        for k, v in self.id.items():
            if v == aid:
                return k
        return None

    def accounts(self):
        """{label: account JSON} of GET /v2/accounts."""
        r = self.d.admin("GET", "/v2/accounts", self.tok)
        qrtest.eq(r.status, 200, "GET /v2/accounts (body %r)" % r.body[:300])
        j = r.json()
        lst = j["accounts"] if isinstance(j, dict) else j
        return {a["label"]: a for a in lst}

    def account(self, label):
        r = self.d.admin("GET", "/v2/accounts/%d" % self.id[label], self.tok)
        qrtest.eq(r.status, 200, "GET /v2/accounts/%d (body %r)"
                  % (self.id[label], r.body[:300]))
        return r.json()

    def wait_ready(self, labels=None, timeout=20.0):
        """Until every account (or those labels) is ready."""
        want = set(labels or self.id)

        def ok():
            accts = self.accounts()
            return all(accts.get(lab, {}).get("ready") for lab in want)
        qrtest.wait_for(ok, timeout, interval=0.1,
                        what="accounts %s ready" % sorted(want)[:5])
        time.sleep(0.1)

    def wait_state(self, label, state, timeout=10.0):
        """Until the account shows state; returns its JSON."""
        return qrtest.wait_for(
            lambda: (lambda a: a if a.get("state") == state else None)(
                self.account(label)), timeout, interval=0.1,
            what="account %s in state %s (now %r)"
            % (label, state, self.account(label).get("state")))

    def patch(self, label, **fields):
        r = self.d.admin("PATCH", "/v2/accounts/%d" % self.id[label],
                         self.tok, fields)
        qrtest.check(r.status in (200, 204), "PATCH %s: %d %r"
                     % (label, r.status, r.body))
        return r

    def delete(self, label):
        return self.d.admin("DELETE", "/v2/accounts/%d" % self.id[label],
                            self.tok)

    def settings(self, **kw):
        r = self.d.admin("PUT", "/v2/settings", self.tok, kw)
        qrtest.check(r.status in (200, 204), "PUT /v2/settings %r: %d %r"
                     % (kw, r.status, r.body))
        g = self.d.admin("GET", "/v2/settings", self.tok)
        qrtest.eq(g.status, 200, "GET /v2/settings")
        got = g.json()
        got = got.get("settings", got) if isinstance(got, dict) else got
        for k, v in kw.items():
            qrtest.eq(got.get(k), v, "setting %s after PUT" % k)
        return got

    # -- client requests ------------------------------------------------------
    def post(self, path, body, timeout=20, headers=None):
        h = {"Authorization": "Bearer " + self.key,
             "anthropic-version": "2023-06-01"}
        h.update(headers or {})
        return self.d.request("POST", path, h, body, timeout=timeout)

    def anth(self, text="hi", **kw):
        timeout = kw.pop("timeout", 20)
        return self.post("/v1/messages", anth_body(text, **kw), timeout)

    def oa(self, text="hi", **kw):
        timeout = kw.pop("timeout", 20)
        return self.post("/v1/chat/completions", oa_body(text, **kw),
                         timeout)

    def served(self, since=0):
        """[(label, status)] of the assistant calls after seq since."""
        return [(r.get("label"), r.get("status"))
                for r in self.fake.assistant_calls(since)]
