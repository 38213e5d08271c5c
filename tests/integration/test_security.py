"""Security checks from the reference list: the route x credential
matrix, path tricks that must not reach the admin API, SQL-shaped keys,
CSRF defences on cookie-authenticated admin calls."""

from qrtest import ADMIN_PASSWORD, Daemon, build_request, check, eq


def _creds(d):
    """name -> headers, for every kind of credential a caller may bring."""
    tok = d.login()
    key = d.add_key(tok, "matrix")["key"]
    dead = d.login()
    r = d.admin("POST", "/v2/auth/logout", dead)
    eq(r.status // 100, 2, "logout of the session to be expired")
    return tok, {
        "none": {},
        "wrong": {"Authorization": "Bearer sk-qr-" + "x" * 43},
        "key": {"Authorization": "Bearer " + key},
        "key-x-api-key": {"x-api-key": key},
        "admin": {"Authorization": "Bearer " + tok},
        "ended-session": {"Authorization": "Bearer " + dead},
    }


def test_route_credential_matrix():
    d = Daemon()
    tok, creds = _creds(d)
    ok_on_v1 = {"key", "key-x-api-key"}
    ok_on_v2 = {"admin"}
    routes = [("GET", "/v1/models", ok_on_v1),
              ("GET", "/v2/status", ok_on_v2),
              ("GET", "/v2/keys", ok_on_v2)]
    for method, path, allowed in routes:
        for name, hdrs in creds.items():
            r = d.request(method, path, hdrs)
            want = 200 if name in allowed else 401
            eq(r.status, want, "%s %s with %s credentials" % (method, path,
                                                             name))
    # state-changing admin call with a client key: refused, nothing made
    r = d.request("POST", "/v2/keys", creds["key"], {"name": "evil"})
    eq(r.status, 401, "POST /v2/keys with a client key")
    names = [k["name"] for k in d.admin("GET", "/v2/keys", tok).json()["keys"]]
    check("evil" not in names, "a client key created a key: %r" % names)


def test_path_tricks_never_reach_admin():
    d = Daemon()
    tok = d.login()
    auth = {"Authorization": "Bearer " + tok}
    for path in ["//v2/status", "/v2%2fstatus", "/%76%32/status",
                 "/V2/status", "/v2/status/", "/v2/./status",
                 "/v2/../v2/status", "/x/../v2/status", "/v2/status%00",
                 "/v2/status;x", "/v2/keys/../status"]:
        r = d.request("GET", path, auth)
        check(r.status in (400, 404), "GET %s: status %d, want 400/404 "
              "(body %r)" % (path, r.status, r.body[:200]))
        check(b'"processes"' not in r.body, "GET %s reached /v2/status"
              % path)
    # odd Host values do not confuse routing either
    for host in ["localhost:62311/#@evil.example", "evil.example",
                 "127.0.0.1:1/v2/status"]:
        r = d.request("GET", "/v2/status", {"Host": host})
        eq(r.status, 401, "/v2/status without credentials, Host %r" % host)


def test_sql_shaped_credentials_are_just_wrong():
    d = Daemon()
    for bad in ["' OR '1'='1", "x'; --", "\" OR 1=1 --",
                "sk-qr-' UNION SELECT hash FROM api_keys --"]:
        r = d.get("/v1/models", {"Authorization": "Bearer " + bad})
        eq(r.status, 401, "/v1/models with key %r" % bad)
        r = d.get("/v2/status", {"Authorization": "Bearer " + bad})
        eq(r.status, 401, "/v2/status with token %r" % bad)
        r = d.request("POST", "/v2/auth/login", body={"password": bad})
        eq(r.status, 401, "login with password %r" % bad)
    check(d.healthy(), "daemon unhealthy after SQL-shaped input")


def test_csrf_defences_on_cookie_sessions():
    d = Daemon()
    r = d.request("POST", "/v2/auth/login", body={"password": ADMIN_PASSWORD})
    eq(r.status, 200, "login")
    cookie = r.header_all("Set-Cookie")[0].split(";")[0]
    host = "127.0.0.1:%d" % d.port
    base = {"Cookie": cookie, "Host": host}
    # a foreign Origin is refused
    r = d.request("POST", "/v2/keys", dict(base, Origin="http://evil.example"),
                  {"name": "csrf"})
    eq(r.status, 403, "POST /v2/keys with a foreign Origin")
    # a form post (what a foreign page can send without preflight)
    r = d.request("POST", "/v2/keys",
                  dict(base, **{"Content-Type":
                                "application/x-www-form-urlencoded"}),
                  "name=csrf")
    eq(r.status, 415, "POST /v2/keys as a form")
    r = d.request("POST", "/v2/keys", dict(base, **{"Content-Type":
                                                     "text/plain"}),
                  '{"name":"csrf"}')
    eq(r.status, 415, "POST /v2/keys as text/plain")
    # the console's own origin works
    r = d.request("POST", "/v2/keys", dict(base, Origin="http://" + host),
                  {"name": "same-origin"})
    eq(r.status, 201, "POST /v2/keys from the console's own origin")
    tok = d.login()
    names = [k["name"] for k in d.admin("GET", "/v2/keys", tok).json()["keys"]]
    check("csrf" not in names, "a refused request created a key: %r" % names)


def test_no_body_is_held_for_a_caller_without_credentials():
    """Credentials are checked on the head: a caller without a key or a
    session is answered at once, before (and without) its body."""
    d = Daemon()
    cases = [
        ("POST", "/v1/chat/completions", [], 401),
        ("POST", "/v1/messages", [("x-api-key", "sk-qr-wrong")], 401),
        ("POST", "/v2/keys", [("Content-Type", "application/json")], 401),
        ("POST", "/v2/auth/login", [("Content-Type", "application/json")],
         413),
        ("GET", "/healthz", [], 413),
        ("POST", "/index.html", [], 413),
    ]
    for method, path, hdrs, want in cases:
        with d.conn(timeout=5) as c:
            # 10 MB announced (under max_body), not one byte of it sent
            c.send(build_request(method, path,
                                 hdrs + [("Content-Length", "10000000")]))
            r = c.read_response(timeout=3)
            eq(r.status, want, "%s %s with an unsent 10 MB body"
               % (method, path))
            check(c.wait_closed(3), "%s %s: connection kept open for a "
                  "body that will never be read" % (method, path))
    check(d.healthy(), "daemon unhealthy after refused bodies")


def test_login_body_is_capped_chunked_too():
    """The one body taken without a session (login) stays small however
    it is framed."""
    d = Daemon()
    chunk = b"400\r\n" + b" " * 0x400 + b"\r\n"
    with d.conn(timeout=5) as c:
        c.send(build_request("POST", "/v2/auth/login",
                             [("Content-Type", "application/json"),
                              ("Transfer-Encoding", "chunked")])
               + chunk * 8 + b"0\r\n\r\n")
        r = c.read_response(timeout=5)
    eq(r.status, 413, "chunked login body of 8 KB")
    r = d.request("POST", "/v2/auth/login",
                  {"Content-Type": "application/json",
                   "Content-Length": "5000"}, " " * 5000)
    eq(r.status, 413, "login body of 5000 bytes (Content-Length)")
    check(d.login(), "a normal login still works")
