"""Bad input: each gets the right 4xx (or a closed connection), and the
worker keeps serving others afterwards (same worker pids: nothing
crashed)."""

import socket
import struct
import time

from qrtest import (Daemon, Background, ConnClosed, build_request, check,
                    eq, TestFailure)


def _still_serving(d, workers_before, what):
    r = d.get("/healthz")
    eq(r.status, 200, "/healthz after %s" % what)
    eq(r.json(), {"status": "ok"}, "/healthz body after %s" % what)
    now = d.workers_pids()
    eq(now, workers_before, "worker pids after %s (a worker died?)" % what)


def _send_and_read(d, data, timeout=5):
    """Send raw bytes, return the first response (or None when the server
    closed without answering)."""
    with d.conn(timeout=timeout) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return c.read_response(timeout=timeout)
        except (ConnectionResetError, ConnClosed):
            return None


def _expect_status(d, data, wants, what):
    r = _send_and_read(d, data)
    check(r is not None, "%s: connection closed without a response "
          "(expected %s)" % (what, wants))
    check(r.status in wants, "%s: expected %s, got %d %r"
          % (what, wants, r.status, r.body[:120]))
    return r


def test_garbage_bytes_400():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    tls_hello = bytes.fromhex("16030100a5010000a10303") + bytes(range(64))
    _expect_status(d, tls_hello, (400,), "TLS ClientHello bytes")
    _still_serving(d, w, "TLS ClientHello bytes")
    _expect_status(d, b"\x00\x01\x02\xff\xfe garbage\r\n\r\n", (400,),
                   "binary garbage")
    _expect_status(d, b"HELLO\r\n\r\n", (400,), "single-token line")
    _expect_status(d, b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
                   (400,), "header line without colon")
    _expect_status(d, b"GET /healthz HTTP/1.1\r\nHost: x\r\n bad-fold\r\n\r\n",
                   (400,), "obsolete header folding")
    _expect_status(d, b"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n",
                   (400,), "space in header name")
    _expect_status(d, b"GET /hea\x01lthz HTTP/1.1\r\n\r\n", (400,),
                   "control byte in target")
    _still_serving(d, w, "garbage requests")


def test_one_megabyte_header_431():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    c = d.conn(timeout=10)
    try:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: "

        def blast():
            try:
                c.sock.sendall(head + b"a" * (1 << 20) + b"\r\n\r\n")
            except OSError:
                pass
        bg = Background(blast)
        try:
            r = c.read_response(timeout=10)
        except (ConnectionResetError,) as e:
            raise TestFailure("1 MB header: connection reset before a 431 "
                              "arrived (%s)" % e)
        eq(r.status, 431, "1 MB header")
        bg.get(15)
    finally:
        c.close()
    _still_serving(d, w, "1 MB header")


def test_request_line_without_version_400():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    _expect_status(d, b"GET /\r\n\r\n", (400,), "GET / without version")
    _expect_status(d, b"GET /healthz\r\nHost: x\r\n\r\n", (400,),
                   "GET /healthz without version, with a header")
    _expect_status(d, b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", (505, 400),
                   "unsupported HTTP version")
    _expect_status(d, b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", (400,),
                   "two spaces in request line")
    _expect_status(d, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x"
                   b"\r\n\r\n", (400, 414, 431),
                   "100 kB request target (over max_header)")
    _still_serving(d, w, "request lines without version")


def test_bad_content_length():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    base = "POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
    _expect_status(d, (base + "Content-Length: -1\r\n\r\n").encode(),
                   (400,), "negative Content-Length")
    _expect_status(d, (base + "Content-Length: -100\r\n\r\nabc").encode(),
                   (400,), "negative Content-Length -100")
    _expect_status(d, (base + "Content-Length: 99999999999999999999999999\r\n"
                       "\r\n").encode(), (400, 413),
                   "huge Content-Length (overflows 64 bits)")
    _expect_status(d, (base + "Content-Length: 9223372036854775807\r\n\r\n")
                   .encode(), (400, 413), "Content-Length INT64_MAX")
    _expect_status(d, (base + "Content-Length: 1e3\r\n\r\n").encode(),
                   (400,), "Content-Length 1e3")
    _expect_status(d, (base + "Content-Length: 0x10\r\n\r\n").encode(),
                   (400,), "Content-Length 0x10")
    _expect_status(d, (base + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"
                       "abcdef").encode(), (400,),
                   "two different Content-Length headers")
    _still_serving(d, w, "bad Content-Length values")


def test_content_length_and_transfer_encoding_400():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    _expect_status(d, data, (400,), "Content-Length + Transfer-Encoding")
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: gzip\r\n\r\n")
    _expect_status(d, data, (501, 400), "Transfer-Encoding: gzip")
    # a JSON body: the login route would refuse any other type first
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    _expect_status(d, data, (400,), "bad chunk size")
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")
    _expect_status(d, data, (400, 413), "chunk size overflowing 64 bits")
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"-5\r\nhello\r\n0\r\n\r\n")
    _expect_status(d, data, (400,), "negative chunk size")
    data = (b"POST /v2/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: 200-ok\r\n\r\n{}")
    _expect_status(d, data, (417,), "Expect other than 100-continue")
    _still_serving(d, w, "CL+TE and bad codings")


def test_client_vanishes_mid_body():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    for i in range(20):
        c = d.conn()
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Length", "100")]) + b'{"passw')
        if i % 2:
            # abortive close: RST
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
        c.close()
    for i in range(10):
        c = d.conn()
        c.send(build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked")]) + b"10\r\nab")
        c.close()
    # vanishing before the head is complete, and after sending a request
    # without reading the response
    for i in range(10):
        c = d.conn()
        c.send(b"GET /healthz HTTP/1.1\r\nHo")
        c.close()
        c = d.conn()
        c.send(build_request("GET", "/healthz") * 5)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack("ii", 1, 0))
        c.close()
    time.sleep(0.5)
    _still_serving(d, w, "clients vanishing mid-request")


def test_bare_lf_request():
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    r = _send_and_read(d, b"GET /healthz HTTP/1.1\nHost: x\nConnection: "
                       b"close\n\n")
    check(r is not None, "bare-LF request: no response at all")
    check(r.status in (200, 400), "bare-LF request: expected 200 (accepted) "
          "or 400, got %d" % r.status)
    if r.status == 200:
        eq(r.json(), {"status": "ok"}, "bare-LF request body")
    _still_serving(d, w, "bare-LF request")


def test_many_bad_requests_do_not_leak_connections():
    """Repeat a mix of bad requests; the daemon keeps answering promptly."""
    d = Daemon()
    w = d.wait_roles()
    w = d.workers_pids()
    bad = [b"\xff\xff\xff\r\n\r\n", b"GET /\r\n\r\n",
           b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
           b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"]
    t0 = time.monotonic()
    for i in range(200):
        r = _send_and_read(d, bad[i % len(bad)])
        check(r is None or 400 <= r.status < 500,
              "bad request %d got %r" % (i, r and r.status))
    check(time.monotonic() - t0 < 30, "200 bad requests took too long")
    _still_serving(d, w, "200 bad requests")
