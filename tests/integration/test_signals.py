"""Signals to the master: HUP (invalid and valid config, graceful worker
replacement with a request in flight), TERM (graceful, bounded), INT and
QUIT (fast), USR1 (log reopen), USR2 (keys reloaded from the database)."""

import os
import re
import signal
import time

from qrtest import (Daemon, Hammer, build_request, check, eq, proc_alive,
                    wait_for)

BODY10 = b'{"p":"xx"}'          # exactly 10 bytes


def _line_of(text, needle):
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError("%r not in config" % needle)


def _half_request(d):
    """A connection with a POST head (Content-Length: 10) and 5 body bytes
    sent, already being read by some worker."""
    c = d.conn(timeout=20)
    c.send(build_request("POST", "/v2/auth/login",
                         [("Content-Length", "10"),
                          ("Content-Type", "application/json")])
           + BODY10[:5])
    time.sleep(0.5)     # let a worker accept it and read the head
    return c


def _finish_half_request(c, what):
    c.send(BODY10[5:])
    r = c.read_response(timeout=10)
    check(r.status in (400, 401), "%s: the in-flight request got %d %r"
          % (what, r.status, r.body[:100]))
    # a complete, well-formed response: body as long as announced
    check(r.header("Content-Length") is None or
          int(r.header("Content-Length")) == len(r.body),
          "%s: truncated response" % what)
    return r


def test_sighup_invalid_config_keeps_running():
    d = Daemon(workers=2)
    d.wait_roles()
    workers = d.workers_pids()
    good = d.config_text()

    # 1: a wrong type
    bad = d.config_text(top={"workers": "x"})
    line = _line_of(bad, "workers")
    off = len(d.log())
    d.write_config(bad)
    d.signal(signal.SIGHUP)
    m = d.wait_log(r"qrelayd\.conf:%d: ?\S.*" % line, 5, start=off)
    check("workers" in m.group(0), "the error does not name the key: %r"
          % m.group(0))
    time.sleep(1)
    eq(d.workers_pids(), workers, "workers after a refused reload (type)")
    eq(d.get("/healthz").status, 200, "/healthz after a refused reload")

    # 2: a syntax error on a known line
    lines = good.splitlines()
    lines.insert(2, "this is = not { valid")
    bad = "\n".join(lines) + "\n"
    off = len(d.log())
    d.write_config(bad)
    d.signal(signal.SIGHUP)
    d.wait_log(r"qrelayd\.conf:3: ?\S", 5, start=off)
    time.sleep(1)
    eq(d.workers_pids(), workers, "workers after a refused reload (syntax)")

    # 3: an unknown key
    bad = good + "no_such_key = 1;\n"
    line = len(bad.splitlines())
    off = len(d.log())
    d.write_config(bad)
    d.signal(signal.SIGHUP)
    d.wait_log(r"qrelayd\.conf:%d: ?.*no_such_key" % line, 5, start=off)
    time.sleep(1)
    eq(d.workers_pids(), workers, "workers after a refused reload (key)")
    check(d.running(), "master died after refused reloads")
    for i in range(10):
        eq(d.get("/healthz").status, 200, "/healthz %d after refused "
           "reloads" % i)


def test_sighup_valid_replaces_workers_gracefully():
    d = Daemon(workers=2)
    d.wait_roles()
    old = d.workers_pids()
    c = _half_request(d)
    h = Hammer(d.port, pause=0.005)
    time.sleep(0.3)
    d.write_config(limits={"keepalive_timeout": 7})
    d.signal(signal.SIGHUP)

    def new_workers():
        now = d.workers_pids()
        fresh = [p for p in now if p not in old]
        return fresh if len(fresh) == 2 else None
    fresh = wait_for(new_workers, 5, what="2 new workers after SIGHUP "
                     "(have %r)" % d.children())
    _finish_half_request(c, "SIGHUP")
    c.close()
    # the old workers go away once their requests are done
    wait_for(lambda: not any(proc_alive(p) for p in old), 12,
             what="old workers %r to exit after reload" % old)
    time.sleep(0.3)
    ok, errors = h.finish()
    eq(errors, [], "requests failing during a graceful reload")
    check(ok > 20, "only %d requests during the reload" % ok)
    eq(sorted(d.workers_pids()), sorted(fresh), "workers after reload")
    eq(d.get("/healthz").status, 200, "/healthz after reload")
    check(d.running(), "master not running after reload")


def test_sighup_unchanged_config_reloads_too():
    d = Daemon(workers=2)
    d.wait_roles()
    old = d.workers_pids()
    d.signal(signal.SIGHUP)
    wait_for(lambda: not set(d.workers_pids()) & set(old)
             and len(d.workers_pids()) == 2, 8,
             what="workers replaced after SIGHUP")
    eq(d.get("/healthz").status, 200, "/healthz after reload")


def test_sigterm_graceful_inflight_completes():
    d = Daemon(workers=2, top={"shutdown_timeout": 8})
    kids = d.wait_roles()
    check(os.path.exists(d.pid_file), "no pid file %s while running"
          % d.pid_file)
    with open(d.pid_file) as f:
        eq(f.read().strip(), str(d.pid), "pid file content")
    c = _half_request(d)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    time.sleep(0.5)
    check(d.running(), "master exited with a request in flight (not "
          "graceful)")
    _finish_half_request(c, "SIGTERM")
    c.close()
    rc = d.wait_exit(8 + 2)
    eq(rc, 0, "exit status after SIGTERM")
    dt = time.monotonic() - t0
    check(dt < 10, "graceful stop took %.1fs" % dt)
    wait_for(lambda: not any(proc_alive(p) for p in kids), 3,
             what="all children gone after SIGTERM")
    check(not os.path.exists(d.pid_file), "pid file left behind after SIGTERM")


def test_sigterm_bounded_by_shutdown_timeout():
    d = Daemon(workers=2, top={"shutdown_timeout": 2},
               limits={"body_timeout": 60, "header_timeout": 60})
    kids = d.wait_roles()
    c = _half_request(d)     # never finished
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait_exit(2 + 4)
    dt = time.monotonic() - t0
    check(dt >= 0.5, "exited at once (%.1fs) though a request was in flight"
          % dt)
    eq(rc, 0, "exit status after a SIGTERM that timed out")
    wait_for(lambda: not any(proc_alive(p) for p in kids), 3,
             what="all children gone")
    c.close()


def _fast_stop(sig):
    d = Daemon(workers=2, top={"shutdown_timeout": 30},
               limits={"body_timeout": 60, "header_timeout": 60})
    kids = d.wait_roles()
    c = _half_request(d)
    idle = d.conn()
    idle.send(b"GET /healthz HTTP/1.1\r\nHo")
    t0 = time.monotonic()
    d.signal(sig)
    d.wait_exit(3)
    dt = time.monotonic() - t0
    check(dt < 3, "fast stop took %.1fs" % dt)
    wait_for(lambda: not any(proc_alive(p) for p in kids), 3,
             what="all children gone after fast stop")
    check(not os.path.exists(d.pid_file), "pid file left behind")
    c.close()
    idle.close()


def test_sigint_fast_stop():
    _fast_stop(signal.SIGINT)


def test_sigquit_fast_stop():
    _fast_stop(signal.SIGQUIT)


def test_sigusr1_reopens_log_file():
    d = Daemon(workers=2, log_file=True)
    d.wait_roles()
    wait_for(lambda: os.path.exists(d.log_path) and
             "ready" in open(d.log_path).read(), 5,
             what="'ready' in the log file %s" % d.log_path)
    rotated = d.log_path + ".1"
    os.rename(d.log_path, rotated)
    d.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(d.log_path), 3,
             what="a new log file at %s after SIGUSR1" % d.log_path)
    time.sleep(0.3)
    # trigger lines from the master: a refused reload
    good = d.config_text()
    d.write_config(good + "zz_unknown_after_rotate = 1;\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: "zz_unknown_after_rotate" in open(d.log_path).read(), 5,
             what="the reload error in the NEW log file")
    old_text = open(rotated).read()
    check("zz_unknown_after_rotate" not in old_text,
          "the reload error went to the rotated file too")
    # ... and from children: a killed worker is reported and replaced; the
    # new worker's lines (if any) land in the new file as well
    d.write_config(good)
    victim = d.workers_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: re.search(r"\b%d\b" % victim, open(d.log_path).read()),
             5, what="the death of worker %d in the new log file" % victim)
    check(not re.search(r"\b%d\b.*(died|killed|signal|exit)" % victim,
                        open(rotated).read()),
          "worker death logged to the rotated file")


def test_sigusr2_reloads_keys():
    d = Daemon(workers=2)
    d.wait_roles()
    p = d.ctl("key", "add", "usr2-key")
    eq(p.returncode, 0, "qrelayctl key add exit status (stderr %r)"
       % p.stderr)
    key = p.stdout.strip()
    check(key.startswith("sk-qr-"), "qrelayctl key add printed %r" % key)
    d.signal(signal.SIGUSR2)

    def works():
        return all(d.get("/v1/models", {"Authorization": "Bearer " + key})
                   .status == 200 for _ in range(4))
    wait_for(works, 3, what="the new key to work on /v1/models after SIGUSR2")
    for i in range(10):
        eq(d.get("/v1/models", {"x-api-key": key}).status, 200,
           "/v1/models with the key (x-api-key), request %d" % i)
    check(d.running() and len(d.workers_pids()) == 2, "daemon state after "
          "SIGUSR2")


def test_sighup_listen_change():
    d = Daemon(workers=2)
    d.wait_roles()
    from qrtest import free_port, http_get
    import socket
    p2 = free_port()
    d.write_config(top={"listen": ["127.0.0.1:%d" % p2]})
    d.signal(signal.SIGHUP)
    wait_for(lambda: http_get(p2, "/healthz", 2).status == 200, 5,
             what="the new port %d to answer after SIGHUP" % p2)

    def old_closed():
        s = socket.socket()
        s.settimeout(1)
        try:
            return s.connect_ex(("127.0.0.1", d.port)) != 0
        finally:
            s.close()
    wait_for(old_closed, 8, what="the old port %d to be closed" % d.port)


def test_sighup_reloads_keys_from_db():
    d = Daemon(workers=2)
    d.wait_roles()
    p = d.ctl("key", "add", "hup-key")
    eq(p.returncode, 0, "qrelayctl key add (stderr %r)" % p.stderr)
    key = p.stdout.strip()
    d.signal(signal.SIGHUP)
    wait_for(lambda: all(d.get("/v1/models", {"x-api-key": key}).status
                         == 200 for _ in range(4)), 5,
             what="the key to work after SIGHUP")


def test_idle_keepalive_does_not_delay_stop_or_reload():
    d = Daemon(workers=2, top={"shutdown_timeout": 20},
               limits={"keepalive_timeout": 60})
    d.wait_roles()
    idle = []
    for i in range(6):
        c = d.conn(timeout=30)
        c.send(build_request("GET", "/healthz"))
        eq(c.read_response().status, 200, "request %d" % i)
        idle.append(c)
    old = d.workers_pids()
    t0 = time.monotonic()
    d.signal(signal.SIGHUP)
    wait_for(lambda: not any(proc_alive(p) for p in old), 5,
             what="old workers with only idle keep-alive connections to "
             "exit after SIGHUP")
    check(time.monotonic() - t0 < 5, "reload waited for idle connections")
    for c in idle:
        c.close()
    idle = []
    for i in range(6):
        c = d.conn(timeout=30)
        c.send(build_request("GET", "/healthz"))
        eq(c.read_response().status, 200, "request %d after reload" % i)
        idle.append(c)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    d.wait_exit(5)
    check(time.monotonic() - t0 < 5, "SIGTERM waited for idle connections")
    for c in idle:
        check(c.wait_closed(2), "idle connection left open after stop")
        c.close()
