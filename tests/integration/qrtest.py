"""qrtest - helpers for the qrelayd integration tests.

Every test starts the real daemon (``$QRELAYD -d -f conf``) in its own
temporary directory, on a free loopback port, with its own SQLite file,
and talks to it over real sockets.  Nothing here is a mock: the Daemon
class only writes a config file, starts the binary, and offers ways to
poke at it (HTTP, raw sockets, signals, /proc, sqlite3).

Python 3 standard library only.
"""

import hashlib
import http.client
import json
import os
import resource
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _tool(env, default):
    p = os.environ.get(env) or os.path.join(REPO, default)
    if not os.path.isabs(p):
        p = os.path.join(REPO, p) if os.path.exists(os.path.join(REPO, p)) \
            else os.path.abspath(p)
    return p


QRELAYD = _tool("QRELAYD", "src/qrelayd")
QRELAYCTL = _tool("QRELAYCTL", "src/qrelayctl")

ADMIN_PASSWORD = "canary-admin-pw-Zq81xK"

# Daemons started in this process; the runner kills leftovers.
_daemons = []
_registry = os.environ.get("QRTEST_REGISTRY")


class TestFailure(AssertionError):
    pass


class Skip(Exception):
    """Raised by a test that cannot run here (e.g. not root)."""


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what):
    if got != want:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def wait_for(fn, timeout=5.0, interval=0.05, what="condition"):
    """Poll fn() until it returns a true value; return that value."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: keep polling
            last_exc = e
        if time.monotonic() >= end:
            extra = (" (last error: %r)" % last_exc) if last_exc else ""
            raise TestFailure("timed out after %.1fs waiting for %s%s"
                              % (timeout, what, extra))
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------
# /proc helpers

def proc_stat(pid):
    """(state, ppid) of pid, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def proc_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def children_of(ppid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st and st[1] == ppid and st[0] != "Z":
            kids.append(int(d))
    return kids


def role_of(pid):
    """'worker', 'refresher', ... from the process title, or ''."""
    m = re.match(r"qrelayd:\s*(\w+)", proc_cmdline(pid))
    return m.group(1) if m else ""


# ---------------------------------------------------------------------
# HTTP over raw sockets

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except Exception as e:
            raise TestFailure("response body is not JSON (%s): %r"
                              % (e, self.body[:200]))

    def __repr__(self):
        return "<Response %s %r body=%r>" % (self.status, self.headers,
                                             self.body[:200])


class ConnClosed(Exception):
    pass


class Conn:
    """A client connection with a read buffer, able to parse pipelined
    responses one at a time."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("read timed out")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnClosed("connection closed by peer")
        self.buf += chunk

    def read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buf:
            self._fill(deadline)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=None):
        raw = self.read_until(b"\r\n\r\n", timeout)
        lines = raw[:-4].split(b"\r\n")
        m = re.match(rb"(HTTP/1\.[01]) (\d{3}) ?(.*)$", lines[0])
        if not m:
            raise TestFailure("bad status line %r" % lines[0])
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.partition(b":")
            if not sep:
                raise TestFailure("bad header line %r" % ln)
            headers.append((k.decode("latin-1").strip(),
                            v.decode("latin-1").strip()))
        return (m.group(1).decode(), int(m.group(2)),
                m.group(3).decode("latin-1"), headers, raw)

    def read_response(self, head_only=False, timeout=None):
        """Read one response.  head_only: the request was HEAD (or the
        status has no body): do not read a body."""
        timeout = timeout or self.timeout
        while True:
            version, status, reason, headers, raw = self.read_head(timeout)
            r = Response(version, status, reason, headers, b"", raw)
            if 100 <= status < 200:
                if status == 101:
                    return r
                continue        # interim response: skip
            break
        if head_only or status in (204, 304):
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if "chunked" in te:
            body = b""
            while True:
                line = self.read_until(b"\r\n", timeout)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers
                    while self.read_until(b"\r\n", timeout) != b"\r\n":
                        pass
                    break
                body += self.read_exact(size, timeout)
                self.read_exact(2, timeout)
            r.body = body
        elif cl is not None:
            r.body = self.read_exact(int(cl), timeout)
        else:
            r.body = self.read_until_close(timeout)
        return r

    def read_until_close(self, timeout=None):
        """Read until EOF; returns all bytes.  Raises socket.timeout if
        the peer keeps the connection open."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnClosed:
                break
            except ConnectionResetError:
                break
        out, self.buf = self.buf, b""
        return out

    def wait_closed(self, timeout):
        """True if the peer closes (EOF or RST) within timeout; the bytes
        received meanwhile are kept in self.buf."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except (ConnClosed, ConnectionResetError):
                return True
            except socket.timeout:
                return False


def build_request(method, path, headers=None, body=None, version="HTTP/1.1",
                  host=True):
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version)]
    hdrs = list((headers or {}).items()) if isinstance(headers, dict) \
        else list(headers or [])
    names = {k.lower() for k, _ in hdrs}
    if host and "host" not in names:
        lines.append("Host: 127.0.0.1")
    for k, v in hdrs:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names \
            and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


# ---------------------------------------------------------------------
# the daemon

def _cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_cfg_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return "{ " + " ".join("%s = %s;" % (k, _cfg_value(x))
                               for k, x in v.items()) + " }"
    return json.dumps(str(v))


class Daemon:
    """One qrelayd under test.

    Daemon(workers=2, limits={...}, top={...}, www=path, env={...},
           log_file=False, start=True, upstream=None)

    upstream: a qrfake.FakeUpstream or a base URL ("http://127.0.0.1:P");
    the config then points q_endpoint, oidc_endpoint and
    kiro_auth_endpoint at it.
    """

    def __init__(self, workers=2, limits=None, top=None, www=None, env=None,
                 log_file=False, start=True, port=None, tmp=None,
                 nofile=None, upstream=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="qrtest-")
        os.chmod(self.tmp, 0o755)
        self.port = port or free_port()
        self.conf = os.path.join(self.tmp, "qrelayd.conf")
        self.vardir = os.path.join(self.tmp, "var")
        os.makedirs(self.vardir, exist_ok=True)
        self.db_path = os.path.join(self.vardir, "qrelayd.db")
        self.pid_file = os.path.join(self.vardir, "qrelayd.pid")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.log_path = os.path.join(self.tmp, "qrelayd.log") \
            if log_file else None
        self.www = www or os.path.join(REPO, "www")
        self.workers = workers
        self.limits = dict(limits or {})
        self.top = dict(top or {})
        self.extra_env = dict(env or {})
        self.nofile = nofile        # RLIMIT_NOFILE for the daemon, or None
        self.upstream = upstream    # FakeUpstream, URL or None
        self.proc = None
        self.pid = None
        self._stderr = None
        self.write_config()
        _daemons.append(self)
        if start:
            self.start()

    # -- configuration ------------------------------------------------
    def config_text(self, **over):
        top = {
            "listen": ["127.0.0.1:%d" % self.port],
            "workers": self.workers,
            "pid_file": self.pid_file,
            "www_dir": self.www,
            "shutdown_timeout": 10,
        }
        if self.log_path:
            top["log_file"] = self.log_path
        if self.upstream is not None:
            url = str(getattr(self.upstream, "url", self.upstream))
            top["upstream"] = {"q_endpoint": url, "oidc_endpoint": url,
                               "kiro_auth_endpoint": url}
        top.update(self.top)
        top.update(over.pop("top", {}))
        if self.upstream is not None and \
                isinstance(top.get("upstream"), dict):
            # top= may add upstream keys (timeouts); keep the endpoints
            merged = {"q_endpoint": url, "oidc_endpoint": url,
                      "kiro_auth_endpoint": url}
            merged.update(top["upstream"])
            top["upstream"] = merged
        limits = dict(self.limits)
        limits.update(over.pop("limits", {}))
        lines = ["# written by tests/integration/qrtest.py"]
        for k, v in top.items():
            if v is None:
                continue
            lines.append("%s = %s;" % (k, _cfg_value(v)))
        lines.append('database = { type = "sqlite"; path = %s; };'
                     % json.dumps(self.db_path))
        if limits:
            lines.append("limits = %s;" % _cfg_value(limits))
        return "\n".join(lines) + "\n"

    def write_config(self, text=None, **over):
        if text is None:
            text = self.config_text(**over)
        tmpname = self.conf + ".new"
        with open(tmpname, "w") as f:
            f.write(text)
        os.rename(tmpname, self.conf)

    # -- life cycle -----------------------------------------------------
    def env(self):
        e = dict(os.environ)
        for k in ("PORT", "DATA_DIR"):
            e.pop(k, None)
        e["QRELAYD_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        e["NO_BROWSER"] = "1"
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.update(self.extra_env)
        return e

    def start(self, wait=True, args=None):
        self._stderr = open(self.stderr_path, "ab")
        argv = [QRELAYD, "-d", "-f", self.conf] + list(args or [])
        nofile = self.nofile

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr,
                                     stderr=self._stderr, env=self.env(),
                                     cwd=self.tmp, preexec_fn=limit)
        self.pid = self.proc.pid
        if _registry:
            with open(_registry, "a") as f:
                f.write("%d %s\n" % (self.pid, self.tmp))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0, port=None):
        port = port or self.port

        def up():
            if self.proc.poll() is not None:
                raise TestFailure("qrelayd exited with %s before ready"
                                  % self.proc.returncode)
            try:
                r = http_get(port, "/healthz", timeout=2)
                return r.status == 200
            except OSError:
                return False
        try:
            wait_for(up, timeout, what="GET /healthz on port %d" % port)
        except TestFailure as e:
            if self.proc.poll() is not None:
                raise TestFailure("qrelayd exited with %s before ready"
                                  % self.proc.returncode)
            raise e

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """Exit status, or raise TestFailure if still running."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure("qrelayd still running %.1fs after signal"
                              % timeout)

    def stop(self, timeout=15.0):
        if self.proc is None or self.proc.poll() is not None:
            self._close_stderr()
            return self.proc.returncode if self.proc else None
        kids = self.all_descendants()
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # children follow the master through the lifeline; make sure
        for pid in kids:
            end = time.monotonic() + 5
            while proc_alive(pid) and time.monotonic() < end:
                time.sleep(0.05)
            if proc_alive(pid) and proc_stat(pid)[1] in (self.pid, 1):
                _kill_quiet(pid, signal.SIGKILL)
        self._close_stderr()
        return self.proc.returncode

    def kill(self):
        if self.proc is None:
            return
        for pid in self.all_descendants():
            _kill_quiet(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_stderr()

    def _close_stderr(self):
        if self._stderr:
            self._stderr.close()
            self._stderr = None

    def cleanup(self):
        self.kill()
        if not os.environ.get("QRTEST_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- processes ------------------------------------------------------
    def children(self):
        """{pid: role} of the master's live children."""
        if not self.pid:
            return {}
        return {p: role_of(p) for p in children_of(self.pid)}

    def all_descendants(self):
        out, todo = [], [self.pid] if self.pid else []
        while todo:
            p = todo.pop()
            for c in children_of(p):
                out.append(c)
                todo.append(c)
        return out

    def pids(self, role):
        return sorted(p for p, r in self.children().items() if r == role)

    def workers_pids(self):
        return self.pids("worker")

    def wait_roles(self, workers=None, timeout=5.0):
        """Wait until the usual set of children is up; returns children."""
        n = self.workers if workers is None else workers

        def ok():
            kids = self.children()
            roles = sorted(kids.values())
            want = sorted(["worker"] * n + ["refresher", "logger"])
            return kids if roles == want else None
        return wait_for(ok, timeout, what="%d workers + refresher + logger"
                        " (have %r)" % (n, self.children()))

    # -- logs -----------------------------------------------------------
    def log(self):
        out = ""
        for p in (self.stderr_path, self.log_path):
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    out += f.read().decode("utf-8", "replace")
        return out

    def log_tail(self, n=40):
        parts = []
        for p in (self.stderr_path, self.log_path):
            if p and os.path.exists(p):
                with open(p, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
                parts.append("--- %s (last %d lines)\n%s"
                             % (p, n, "\n".join(lines[-n:])))
        return "\n".join(parts)

    def wait_log(self, pattern, timeout=5.0, start=0):
        """Wait until the log (from offset start) matches regex pattern."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()[start:]), timeout,
                        what="log line matching %r" % pattern)

    # -- HTTP -----------------------------------------------------------
    def conn(self, timeout=10.0):
        return Conn(self.port, timeout)

    def request(self, method, path, headers=None, body=None, timeout=10.0,
                raw_version="HTTP/1.1"):
        """One request on a new connection (Connection: close)."""
        hdrs = list((headers or {}).items()) if isinstance(headers, dict) \
            else list(headers or [])
        if not any(k.lower() == "connection" for k, _ in hdrs):
            hdrs.append(("Connection", "close"))
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            if not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", "application/json"))
        with Conn(self.port, timeout) as c:
            c.send(build_request(method, path, hdrs, body, raw_version))
            return c.read_response(head_only=(method == "HEAD"))

    def get(self, path, headers=None, **kw):
        return self.request("GET", path, headers, **kw)

    def healthy(self):
        r = self.get("/healthz")
        return r.status == 200

    # -- admin ----------------------------------------------------------
    def login(self, password=ADMIN_PASSWORD):
        r = self.request("POST", "/v2/auth/login", body={"password": password})
        eq(r.status, 200, "POST /v2/auth/login status (body %r)" % r.body)
        tok = r.json().get("token")
        check(isinstance(tok, str) and tok, "login: no token in %r" % r.body)
        return tok

    def admin(self, method, path, token, body=None):
        return self.request(method, path,
                            {"Authorization": "Bearer " + token}, body)

    def add_key(self, token, name="t"):
        r = self.admin("POST", "/v2/keys", token, {"name": name})
        eq(r.status, 201, "POST /v2/keys status (body %r)" % r.body)
        j = r.json()
        check(isinstance(j.get("key"), str), "no key in %r" % j)
        return j

    # -- storage --------------------------------------------------------
    def db(self, path=None):
        c = sqlite3.connect(path or self.db_path, timeout=10)
        return c

    def query(self, sql, args=()):
        c = self.db()
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    # -- qrelayctl ------------------------------------------------------
    def ctl(self, *args, stdin=None, timeout=20):
        argv = [QRELAYCTL, "-f", self.conf] + list(args)
        return subprocess.run(argv, input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=self.env(),
                              cwd=self.tmp)


def http_get(port, path, timeout=5.0):
    with Conn(port, timeout) as c:
        c.send(build_request("GET", path, [("Connection", "close")]))
        return c.read_response()


def _kill_quiet(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def cleanup_all():
    while _daemons:
        d = _daemons.pop()
        try:
            d.cleanup()
        except Exception:
            pass


SANITIZER_RX = re.compile(r"ERROR: (?:AddressSanitizer|LeakSanitizer)|"
                          r"runtime error:|WARNING: ThreadSanitizer|"
                          r"==\d+==ERROR")


def finish_all():
    """Stop every daemon still running gracefully, then look for
    sanitizer reports and bad exit statuses.  Returns a list of
    problems (strings)."""
    problems = []
    for d in _daemons:
        if d.proc is None:
            continue
        if d.proc.poll() is None:
            for pid in d.all_descendants():       # a test may have
                _kill_quiet(pid, signal.SIGCONT)  # stopped one
            rc = d.stop()
            if rc not in (0, None):
                problems.append("qrelayd exited with status %s on SIGTERM "
                                "at the end of the test" % rc)
        m = SANITIZER_RX.search(d.log())
        if m:
            text = d.log()
            problems.append("sanitizer report in the daemon's output: %s"
                            % text[m.start():m.start() + 300].replace(
                                "\n", " | "))
    return problems


def log_tails():
    return "\n".join(d.log_tail() for d in _daemons)


def sha256_hex(s):
    return hashlib.sha256(s.encode() if isinstance(s, str) else s).hexdigest()


class Background(threading.Thread):
    """Run fn in a thread, keep its result or exception."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.result = self.exc = None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # noqa
            self.exc = e

    def get(self, timeout):
        self.join(timeout)
        if self.is_alive():
            raise TestFailure("background task still running after %ss"
                              % timeout)
        if self.exc:
            raise self.exc
        return self.result


class Hammer(threading.Thread):
    """Requests /healthz on new connections until stopped; records
    failures."""

    def __init__(self, port, pause=0.01):
        super().__init__(daemon=True)
        self.port, self.pause = port, pause
        self.ok = 0
        self.errors = []
        self.stop_ev = threading.Event()
        self.start()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                r = http_get(self.port, "/healthz", timeout=5)
                if r.status == 200:
                    self.ok += 1
                else:
                    self.errors.append("status %d" % r.status)
            except Exception as e:  # noqa
                self.errors.append(repr(e))
            time.sleep(self.pause)

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        return self.ok, self.errors
