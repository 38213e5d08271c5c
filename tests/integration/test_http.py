"""HTTP/1.1 server behaviour of a worker: routes, keep-alive, pipelining,
HEAD, request bodies, 100-continue, static files and path escapes."""

import os

from qrtest import (Daemon, build_request, check, eq, TestFailure,
                    ADMIN_PASSWORD)


def test_healthz():
    d = Daemon()
    r = d.get("/healthz")
    eq(r.status, 200, "GET /healthz status")
    eq(r.json(), {"status": "ok"}, "GET /healthz body")
    ct = r.header("Content-Type") or ""
    check(ct.startswith("application/json"),
          "GET /healthz Content-Type: expected application/json, got %r" % ct)
    check(r.header("Content-Length") == str(len(r.body)),
          "Content-Length %r does not match body length %d"
          % (r.header("Content-Length"), len(r.body)))


def test_unknown_path_404_json():
    d = Daemon()
    r = d.get("/no/such/path-xyz")
    eq(r.status, 404, "GET /no/such/path-xyz status")
    j = r.json()
    check(isinstance(j.get("error"), dict),
          "404 body: expected {\"error\":{...}}, got %r" % j)
    ct = r.header("Content-Type") or ""
    check(ct.startswith("application/json"), "404 Content-Type %r" % ct)


def test_keep_alive_two_requests_one_connection():
    d = Daemon()
    with d.conn() as c:
        c.send(build_request("GET", "/healthz"))
        r1 = c.read_response()
        eq(r1.status, 200, "first request status")
        check((r1.header("Connection") or "").lower() != "close",
              "HTTP/1.1 response says Connection: close")
        c.send(build_request("GET", "/healthz"))
        r2 = c.read_response()
        eq(r2.status, 200, "second request on same connection status")
        eq(r2.json(), {"status": "ok"}, "second body")


def test_http10_closes_by_default():
    d = Daemon()
    with d.conn() as c:
        c.send(build_request("GET", "/healthz", version="HTTP/1.0"))
        r = c.read_response()
        eq(r.status, 200, "HTTP/1.0 status")
        check(r.version in ("HTTP/1.0", "HTTP/1.1"), "version %r" % r.version)
        check(c.wait_closed(3), "HTTP/1.0 request without keep-alive: "
              "connection still open 3s after the response")
    # HTTP/1.0 with Connection: keep-alive may stay open
    with d.conn() as c:
        c.send(build_request("GET", "/healthz", [("Connection", "keep-alive")],
                             version="HTTP/1.0"))
        r = c.read_response()
        eq(r.status, 200, "HTTP/1.0 keep-alive status")


def test_pipelined_requests_in_order():
    d = Daemon()
    with d.conn() as c:
        data = (build_request("GET", "/healthz")
                + build_request("GET", "/pipe-missing-1")
                + build_request("HEAD", "/healthz")
                + build_request("GET", "/pipe-missing-2"))
        c.send(data)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response(head_only=True)
        r4 = c.read_response()
        eq([r1.status, r2.status, r3.status, r4.status], [200, 404, 200, 404],
           "statuses of 4 pipelined requests")
        eq(r1.json(), {"status": "ok"}, "first pipelined body")
        # nothing beyond the 4 responses (HEAD sent no body)
        c.send(build_request("GET", "/healthz", [("Connection", "close")]))
        r5 = c.read_response()
        eq(r5.status, 200, "request after the pipelined batch")
        eq(r5.json(), {"status": "ok"}, "body after pipelined batch")


def test_head_healthz():
    d = Daemon()
    with d.conn() as c:
        c.send(build_request("HEAD", "/healthz"))
        r = c.read_response(head_only=True)
        eq(r.status, 200, "HEAD /healthz status")
        cl = r.header("Content-Length")
        check(cl is not None and int(cl) > 0,
              "HEAD /healthz: expected Content-Length of the GET body, got %r"
              % cl)
        # the next response must start right away: no body was sent
        c.send(build_request("GET", "/healthz"))
        r2 = c.read_response()
        eq(r2.status, 200, "GET after HEAD on the same connection (a body "
           "after the HEAD response would break this)")
        eq(len(r2.body), int(cl), "HEAD Content-Length vs GET body length")


def test_post_content_length_body():
    d = Daemon()
    r = d.request("POST", "/v2/auth/login", body={"password": "wrong-one"})
    eq(r.status, 401, "login with wrong password (Content-Length body)")
    j = r.json()
    check("error" in j, "401 body has no error: %r" % j)


def test_post_chunked_body():
    d = Daemon()
    body = b'{"password": "wrong-chunked"}'
    with d.conn() as c:
        head = build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked"),
                              ("Content-Type", "application/json"),
                              ("Connection", "close")])
        chunks = b""
        for part in (body[:7], body[7:20], body[20:]):
            chunks += b"%x\r\n%s\r\n" % (len(part), part)
        chunks += b"0\r\n\r\n"
        c.send(head + chunks)
        r = c.read_response()
        eq(r.status, 401, "login with chunked body and wrong password")
    # a chunked body with the right password logs in: the body was decoded
    body = ('{"password": "%s"}' % ADMIN_PASSWORD).encode()
    with d.conn() as c:
        head = build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked"),
                              ("Content-Type", "application/json"),
                              ("Connection", "close")])
        chunks = b"%x;ext=1\r\n%s\r\n" % (5, body[:5]) + \
            b"%X\r\n%s\r\n" % (len(body) - 5, body[5:]) + b"0\r\n\r\n"
        c.send(head)
        c.send(chunks)
        r = c.read_response()
        eq(r.status, 200, "login with chunked body and right password")
        check(r.json().get("token"), "no token in %r" % r.body)


def test_expect_100_continue():
    d = Daemon()
    body = b'{"password": "nope-100"}'
    with d.conn() as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Expect", "100-continue"),
                              ("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("Connection", "close")]))
        head = c.read_until(b"\r\n\r\n", timeout=5)
        check(head.startswith(b"HTTP/1.1 100 Continue\r\n"),
              "expected 'HTTP/1.1 100 Continue' before the body, got %r"
              % head)
        c.send(body)
        r = c.read_response()
        eq(r.status, 401, "final status after 100-continue")


def _make_www(d_tmp):
    www = os.path.join(d_tmp, "www")
    os.makedirs(os.path.join(www, "sub"), exist_ok=True)
    files = {
        "index.html": b"<!doctype html><title>qr</title>index-marker\n",
        "a.css": b"body { color: red; }\n",
        "b.js": b"console.log('b');\n",
        "c.svg": b'<svg xmlns="http://www.w3.org/2000/svg"></svg>\n',
        "d.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "e.json": b'{"e": 1}\n',
        "sub/index.html": b"sub-index\n",
    }
    for name, data in files.items():
        with open(os.path.join(www, name), "wb") as f:
            f.write(data)
    return www, files


def _daemon_with_www():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="qrtest-")
    os.chmod(tmp, 0o755)
    www, files = _make_www(tmp)
    with open(os.path.join(tmp, "secret"), "wb") as f:
        f.write(b"TOP-SECRET-OUTSIDE-WWW\n")
    os.symlink(os.path.join(tmp, "secret"), os.path.join(www, "link.txt"))
    os.symlink(tmp, os.path.join(www, "updir"))
    d = Daemon(www=www, tmp=tmp)
    return d, files


def test_static_types_and_bodies():
    d, files = _daemon_with_www()
    types = {
        "index.html": "text/html",
        "a.css": "text/css",
        "b.js": ("application/javascript", "text/javascript"),
        "c.svg": "image/svg+xml",
        "d.png": "image/png",
        "e.json": "application/json",
    }
    for name, want in types.items():
        r = d.get("/" + name)
        eq(r.status, 200, "GET /%s status" % name)
        eq(r.body, files[name], "GET /%s body" % name)
        ct = (r.header("Content-Type") or "").split(";")[0].strip().lower()
        wants = want if isinstance(want, tuple) else (want,)
        check(ct in wants, "GET /%s Content-Type: expected %s, got %r"
              % (name, " or ".join(wants), ct))
    r = d.get("/")
    eq(r.status, 200, "GET / status")
    eq(r.body, files["index.html"], "GET / serves index.html")
    check((r.header("Content-Type") or "").startswith("text/html"),
          "GET / Content-Type %r" % r.header("Content-Type"))
    r = d.get("/sub/")
    eq(r.status, 200, "GET /sub/ status")
    eq(r.body, files["sub/index.html"], "GET /sub/ serves sub/index.html")
    r = d.get("/missing-file.css")
    eq(r.status, 404, "GET /missing-file.css")
    # HEAD of a static file
    with d.conn() as c:
        c.send(build_request("HEAD", "/d.png"))
        r = c.read_response(head_only=True)
        eq(r.status, 200, "HEAD /d.png")
        eq(r.header("Content-Length"), str(len(files["d.png"])),
           "HEAD /d.png Content-Length")
        c.send(build_request("GET", "/e.json", [("Connection", "close")]))
        r = c.read_response()
        eq(r.body, files["e.json"], "GET after HEAD of a static file")


def test_static_etag_304():
    d, files = _daemon_with_www()
    r = d.get("/a.css")
    eq(r.status, 200, "GET /a.css")
    etag = r.header("ETag")
    check(etag, "GET /a.css: no ETag header")
    with d.conn() as c:
        c.send(build_request("GET", "/a.css", [("If-None-Match", etag)]))
        r = c.read_response(head_only=True)
        eq(r.status, 304, "GET /a.css with If-None-Match: %s" % etag)
        # no body may follow a 304: the next response must parse at once
        c.send(build_request("GET", "/e.json", [("Connection", "close")]))
        r2 = c.read_response()
        eq(r2.status, 200, "request after 304 on same connection (a body "
           "after the 304 would break this)")
        eq(r2.body, files["e.json"], "body of request after 304")
    r = d.get("/a.css", {"If-None-Match": '"not-the-etag"'})
    eq(r.status, 200, "GET with a non-matching If-None-Match")
    eq(r.body, files["a.css"], "body with non-matching If-None-Match")


def _assert_refused(d, target):
    with d.conn() as c:
        c.send(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                % target).encode())
        r = c.read_response()
    check(r.status in (400, 403, 404),
          "GET %s: expected 400/403/404, got %d" % (target, r.status))
    for marker in (b"root:", b"TOP-SECRET-OUTSIDE-WWW"):
        check(marker not in r.body,
              "GET %s leaked a file outside www: %r" % (target, r.body[:80]))


def test_static_no_escape():
    d, _ = _daemon_with_www()
    for target in ("/../etc/passwd",
                   "/../../../../../../etc/passwd",
                   "/%2e%2e/%2e%2e/etc/passwd",
                   "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                   "/%2E%2E/secret",
                   "/..%2fsecret",
                   "/..%2Fsecret",
                   "/../secret",
                   "/sub/../../secret",
                   "/sub/%2e%2e/%2e%2e/secret",
                   "/.%2e/secret",
                   "/link.txt",             # symlink to a file outside
                   "/updir/secret",         # symlinked dir pointing outside
                   "/index.html%00.png",
                   "/%00",
                   "/..\\secret",
                   "/%5c..%5csecret",
                   "//etc/passwd"):
        _assert_refused(d, target)
    # the server still serves normal files afterwards
    r = d.get("/index.html")
    eq(r.status, 200, "GET /index.html after escape attempts")


def test_many_connections_at_once():
    """Many connections open at the same time, each served."""
    d = Daemon()
    conns = [d.conn() for _ in range(200)]
    try:
        for c in conns:
            c.send(build_request("GET", "/healthz"))
        for i, c in enumerate(conns):
            r = c.read_response()
            if r.status != 200:
                raise TestFailure("connection %d got %d" % (i, r.status))
    finally:
        for c in conns:
            c.close()


def test_ipv6_and_two_listeners():
    import socket
    from qrtest import free_port, Conn
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        from qrtest import Skip
        raise Skip("no IPv6 loopback")
    p6 = free_port()
    d = Daemon(start=False)
    d.top["listen"] = ["127.0.0.1:%d" % d.port, "[::1]:%d" % p6]
    d.write_config()
    d.start()
    eq(d.get("/healthz").status, 200, "IPv4 listener")
    c = Conn(p6, host="::1")
    try:
        c.send(build_request("GET", "/healthz", [("Host", "[::1]"),
                                                 ("Connection", "close")]))
        r = c.read_response()
    finally:
        c.close()
    eq(r.status, 200, "IPv6 listener [::1]:%d" % p6)


def test_metrics_endpoint():
    d = Daemon()
    d.get("/healthz")
    r = d.get("/metrics")
    eq(r.status, 200, "GET /metrics")
    check((r.header("Content-Type") or "").startswith("text/plain"),
          "/metrics Content-Type %r" % r.header("Content-Type"))
    check(b"# TYPE" in r.body or b"# HELP" in r.body,
          "/metrics is not Prometheus text: %r" % r.body[:200])


def test_pipelined_bodies_and_keep_alive():
    """Requests with bodies (Content-Length and chunked) followed by more
    requests in the same write: body boundaries are respected."""
    d = Daemon()
    body = b'{"password": "pipelined-wrong"}'
    chunked = (build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked"),
                              ("Content-Type", "application/json")])
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    with d.conn() as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Type", "application/json")], body)
               + build_request("GET", "/healthz")
               + chunked
               + build_request("GET", "/pipe-404"))
        got = [c.read_response().status for _ in range(4)]
        eq(got, [401, 200, 401, 404], "pipelined POST/GET/chunked POST/GET")
    # a chunked body with trailers, then another request
    with d.conn() as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Transfer-Encoding", "chunked"),
                              ("Content-Type", "application/json")])
               + b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n"
               % (len(body), body)
               + build_request("GET", "/healthz"))
        got = [c.read_response().status for _ in range(2)]
        eq(got, [401, 200], "chunked body with trailers, then GET")


def test_static_big_file_query_and_encoding():
    import hashlib
    d, files = _daemon_with_www()
    big = bytes(range(256)) * (5 * 4096)          # 5 MiB
    with open(os.path.join(d.www, "big.bin"), "wb") as f:
        f.write(big)
    r = d.get("/big.bin", timeout=30)
    eq(r.status, 200, "GET /big.bin")
    eq(len(r.body), len(big), "length of a 5 MiB file")
    eq(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(big).hexdigest(),
       "content of a 5 MiB file")
    # a slow reader gets it all too: pause before reading and mid-way, so
    # the worker meets a full socket buffer and has to wait for EPOLLOUT
    import time
    with d.conn(timeout=30) as c:
        c.send(build_request("GET", "/big.bin", [("Connection", "close")]))
        time.sleep(1.0)
        first = c.read_exact(1 << 20, timeout=30)
        time.sleep(1.0)
        data = first + c.read_until_close(timeout=30)
        body = data[data.index(b"\r\n\r\n") + 4:]
        eq(len(body), len(big), "body length for a slow reader")
        check(body == big, "body content differs for a slow reader")
    with d.conn(timeout=30) as c:
        c.send(build_request("GET", "/big.bin", [("Connection", "close")]))
        time.sleep(1.0)
        r = c.read_response(timeout=30)
        eq(hashlib.sha256(r.body).hexdigest(),
           hashlib.sha256(big).hexdigest(), "5 MiB file read after a pause")
    r = d.get("/a.css?v=123")
    eq(r.status, 200, "GET /a.css?v=123")
    eq(r.body, files["a.css"], "static file with a query string")
    r = d.get("/%61.css")
    eq(r.status, 200, "GET /%61.css (percent-encoded a)")
    eq(r.body, files["a.css"], "percent-encoded static path")
    # a request on the same connection after a big file
    with d.conn(timeout=30) as c:
        c.send(build_request("GET", "/big.bin") + build_request("GET", "/e.json"))
        eq(len(c.read_response(timeout=30).body), len(big), "big file")
        eq(c.read_response().body, files["e.json"], "file after a big one")


def test_duplicate_host_400():
    d = Daemon()
    with d.conn() as c:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        r = c.read_response()
    eq(r.status, 400, "two Host headers")
