"""Limits and timeouts: header size and count (431), body size (413),
header/body timeouts and the idle keep-alive timeout."""

import socket
import threading
import time

from qrtest import Daemon, build_request, check, eq, wait_for


SMALL = {"max_header": 4096, "max_headers": 20, "max_body": 1024}


def test_header_too_big_431():
    d = Daemon(limits=SMALL)
    with d.conn() as c:
        c.send(build_request("GET", "/healthz",
                             [("X-Big", "a" * 6000), ("Connection", "close")]))
        r = c.read_response()
    eq(r.status, 431, "6000-byte header with max_header = 4096")
    # just under the limit is fine
    r = d.get("/healthz", {"X-Small": "b" * 3000})
    eq(r.status, 200, "3000-byte header with max_header = 4096")


def test_too_many_headers_431():
    d = Daemon(limits=SMALL)
    hdrs = [("X-H%d" % i, "v") for i in range(30)] + [("Connection", "close")]
    with d.conn() as c:
        c.send(build_request("GET", "/healthz", hdrs))
        r = c.read_response()
    eq(r.status, 431, "31 headers with max_headers = 20")
    hdrs = [("X-H%d" % i, "v") for i in range(10)]
    r = d.get("/healthz", hdrs)
    eq(r.status, 200, "12 headers with max_headers = 20")


def test_body_too_big_413_without_sending_it():
    d = Daemon(limits=SMALL)
    with d.conn() as c:
        # declare 2048 bytes, send none: the answer must not wait for them
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Length", "2048"),
                              ("Content-Type", "application/json")]))
        r = c.read_response(timeout=5)
    eq(r.status, 413, "POST with Content-Length 2048 > max_body 1024")
    # the same with Expect: 100-continue: 413 instead of 100
    with d.conn() as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Length", "4096"),
                              ("Expect", "100-continue")]))
        r = c.read_response(timeout=5)
    eq(r.status, 413, "Expect: 100-continue with too large Content-Length")
    # a chunked body that grows past the limit
    with d.conn() as c:
        head = build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked"),
                              ("Content-Type", "application/json")])
        chunk = b"200\r\n" + b"x" * 0x200 + b"\r\n"
        c.send(head + chunk * 3 + b"0\r\n\r\n")
        r = c.read_response(timeout=5)
    eq(r.status, 413, "chunked body of 1536 bytes > max_body 1024")
    r = d.request("POST", "/v2/auth/login", body={"password": "x" * 100})
    eq(r.status, 401, "small body under max_body")


def test_header_timeout_silent_and_slow_clients():
    d = Daemon(limits={"header_timeout": 2})
    silent = d.conn(timeout=15)
    slow = d.conn(timeout=15)
    t0 = time.monotonic()
    slow_closed_at = []

    def trickle():
        data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
        for i in range(len(data)):
            try:
                slow.sock.send(data[i:i + 1])
            except OSError:
                break
            time.sleep(1)
            if time.monotonic() - t0 > 12:
                break
    th = threading.Thread(target=trickle, daemon=True)
    th.start()

    # others are served normally meanwhile
    served = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        r = d.get("/healthz", timeout=3)
        eq(r.status, 200, "/healthz while slow clients hold connections")
        served += 1
        time.sleep(0.2)
    check(served >= 5, "only %d requests served in 3 s" % served)

    check(silent.wait_closed(6), "silent client still connected %.1fs after "
          "connecting (header_timeout = 2)" % (time.monotonic() - t0))
    t_silent = time.monotonic() - t0
    check(t_silent >= 1.0, "silent client closed too early (%.1fs)" % t_silent)
    if silent.buf:
        check(silent.buf.startswith(b"HTTP/1.1 408"),
              "silent client: expected 408 or a plain close, got %r"
              % silent.buf[:60])
    check(slow.wait_closed(8), "client sending one byte a second still "
          "connected %.1fs after connecting (header_timeout = 2)"
          % (time.monotonic() - t0))
    t_slow = time.monotonic() - t0
    check(t_slow < 7, "slow client closed only after %.1fs" % t_slow)
    if slow.buf:
        check(slow.buf.startswith(b"HTTP/1.1 408"),
              "slow client: expected 408 or close, got %r" % slow.buf[:60])
    silent.close()
    slow.close()
    eq(d.get("/healthz").status, 200, "/healthz afterwards")


def test_body_timeout():
    d = Daemon(limits={"body_timeout": 2})
    with d.conn(timeout=15) as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Length", "100"),
                              ("Content-Type", "application/json")])
               + b'{"pass')
        t0 = time.monotonic()
        check(c.wait_closed(7), "client stalled mid-body still connected "
              "after %.1fs (body_timeout = 2)" % (time.monotonic() - t0))
        if c.buf:
            check(c.buf.startswith(b"HTTP/1.1 408"),
                  "stalled body: expected 408 or close, got %r" % c.buf[:60])
    eq(d.get("/healthz").status, 200, "/healthz afterwards")


def test_keepalive_idle_timeout():
    d = Daemon(limits={"keepalive_timeout": 2})
    with d.conn(timeout=15) as c:
        c.send(build_request("GET", "/healthz"))
        r = c.read_response()
        eq(r.status, 200, "first request")
        t0 = time.monotonic()
        # still open shortly after
        check(not c.wait_closed(0.8), "keep-alive connection closed at once")
        c.send(build_request("GET", "/healthz"))
        eq(c.read_response().status, 200, "second request within the idle "
           "timeout")
        t0 = time.monotonic()
        check(c.wait_closed(6), "idle keep-alive connection still open "
              "%.1fs after the last response (keepalive_timeout = 2)"
              % (time.monotonic() - t0))
        dt = time.monotonic() - t0
        check(dt >= 1.0, "idle connection closed too early (%.1fs)" % dt)
        eq(c.buf, b"", "bytes sent on idle close")


def test_max_body_not_applied_to_small_bodies_in_pieces():
    """A body just under max_body, sent in many small writes, is read."""
    d = Daemon(limits=SMALL)
    body = b'{"password": "' + b"z" * 990 + b'"}'
    check(len(body) <= 1024, "test body too long")
    with d.conn() as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Length", str(len(body))),
                              ("Content-Type", "application/json"),
                              ("Connection", "close")]))
        for i in range(0, len(body), 100):
            c.send(body[i:i + 100])
            time.sleep(0.01)
        r = c.read_response()
    eq(r.status, 401, "body in pieces, wrong password")


def test_descriptor_exhaustion_recovers():
    """Out of descriptors, a worker backs off accepting instead of
    spinning or dying, and serves again once clients leave."""
    d = Daemon(workers=1, nofile=64)
    worker = d.workers_pids()
    conns = []
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            conns.append(s)
        d.wait_log(r"accept: Too many open files", timeout=5)
    finally:
        for s in conns:
            s.close()
    wait_for(d.healthy, 10, what="/healthz after the clients left")
    eq(d.workers_pids(), worker, "worker pids (no crash, no respawn)")
