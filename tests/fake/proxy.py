#!/usr/bin/env python3
"""proxy - a small outbound proxy on loopback for qrelay's tests.

    python3 tests/fake/proxy.py --port-file PATH [--port N]
        [--user U --password P] [--quiet]

One port speaks both protocols (told apart by the first byte):
- HTTP proxy: absolute-form requests ("POST http://host:port/path
  HTTP/1.1") are sent on to host:port with "Connection: close" (one
  upstream connection per request, and the answer is marked
  "Connection: close" so the client does not reuse it), and CONNECT
  host:port tunnels.  With --user, Proxy-Authorization: Basic is
  required (407 otherwise).
- SOCKS5 (RFC 1928): CONNECT to an IPv4, IPv6 or domain address, with
  no authentication or, with --user, username/password (RFC 1929).

It counts what went through it, per client (the proxy user name, or
"-" without one), so a test can tell which traffic used it.  A request
in origin form to the proxy itself is a control request:
    GET  /_proxy/stats   {"connections", "http_requests", "connects",
                          "socks", "auth_failures", "errors",
                          "by_user": {user: n}, "by_target":
                          {"host:port": n}, "log": [{"kind", "user",
                          "target", "method", "path", "out_port" (the
                          local port of the onward connection, which
                          the fake records as "peer_port"), "time"}]}
    POST /_proxy/reset   clears the counters

Python 3.11 standard library only; one asyncio loop.
"""

import argparse
import asyncio
import base64
import collections
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time

STATS = {}
ARGS = None


def reset_stats():
    STATS.clear()
    STATS.update({"connections": 0, "http_requests": 0, "connects": 0,
                  "socks": 0, "auth_failures": 0, "errors": 0,
                  "by_user": collections.Counter(),
                  "by_target": collections.Counter(),
                  "log": collections.deque(maxlen=5000)})


def log(msg):
    if not ARGS.quiet:
        sys.stderr.write("proxy: %s\n" % msg)
        sys.stderr.flush()


def note(kind, user, target, method=None, path=None, out=None):
    STATS["by_user"][user or "-"] += 1
    STATS["by_target"][target] += 1
    STATS["log"].append({"kind": kind, "user": user or "-",
                         "target": target, "method": method, "path": path,
                         "out_port": out.get_extra_info("sockname")[1]
                         if out is not None else None,
                         "time": time.time()})
    log("%s %s %s%s" % (kind, user or "-", target,
                        (" %s %s" % (method, path)) if method else ""))


def stats_json():
    out = dict(STATS)
    out["by_user"] = dict(STATS["by_user"])
    out["by_target"] = dict(STATS["by_target"])
    out["log"] = list(STATS["log"])
    return out


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError, AttributeError):
            pass


async def splice(cr, cw, ur, uw):
    """Copy both ways until both sides are done."""
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
    for w in (uw, cw):
        try:
            w.close()
        except Exception:
            pass


def simple_answer(status, reason, body=b"", extra=()):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    head = ["HTTP/1.1 %d %s" % (status, reason),
            "Content-Length: %d" % len(body), "Connection: close"]
    head += list(extra)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def check_basic(value):
    """The user of a Proxy-Authorization value when it matches, or
    None."""
    if not value or not value.lower().startswith("basic "):
        return None
    try:
        u, _, p = base64.b64decode(value[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if u == ARGS.user and p == ARGS.password:
        return u
    return None


def split_hostport(s, default_port):
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = s.rpartition(":") if ":" in s else (s, "", "")
    return host, int(port) if port else default_port


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    return lines[0], lines[1:]


async def http_proxy(first, reader, writer):
    try:
        reqline, hlines = await read_head_with(first, reader)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return
    parts = reqline.split(" ")
    if len(parts) != 3:
        writer.write(simple_answer(400, "Bad Request"))
        return
    method, target, version = parts
    headers = []
    for ln in hlines:
        k, _, v = ln.partition(":")
        headers.append((k.strip(), v.strip()))
    hmap = {k.lower(): v for k, v in headers}

    if target.startswith("/"):      # a control request to the proxy
        if target == "/_proxy/stats" and method == "GET":
            writer.write(simple_answer(200, "OK", stats_json()))
        elif target == "/_proxy/reset" and method == "POST":
            n = int(hmap.get("content-length", "0") or 0)
            if n:
                await reader.readexactly(n)
            reset_stats()
            writer.write(simple_answer(200, "OK", {"reset": True}))
        else:
            writer.write(simple_answer(404, "Not Found"))
        return

    user = None
    if ARGS.user:
        user = check_basic(hmap.get("proxy-authorization"))
        if user is None:
            STATS["auth_failures"] += 1
            writer.write(simple_answer(
                407, "Proxy Authentication Required", b"",
                ['Proxy-Authenticate: Basic realm="qrtest"']))
            return

    if method == "CONNECT":
        host, port = split_hostport(target, 443)
        try:
            ur, uw = await asyncio.open_connection(host, port)
        except OSError as e:
            STATS["errors"] += 1
            writer.write(simple_answer(502, "Bad Gateway", str(e).encode()))
            return
        STATS["connects"] += 1
        note("connect", user, "%s:%d" % (host, port), out=uw)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await splice(reader, writer, ur, uw)
        return

    if not target.lower().startswith("http://"):
        writer.write(simple_answer(400, "Bad Request",
                                   b"absolute-form http:// only"))
        return
    rest = target[7:]
    hostport, slash, path = rest.partition("/")
    path = "/" + path if slash else "/"
    host, port = split_hostport(hostport, 80)
    try:
        ur, uw = await asyncio.open_connection(host, port)
    except OSError as e:
        STATS["errors"] += 1
        writer.write(simple_answer(502, "Bad Gateway", str(e).encode()))
        return
    STATS["http_requests"] += 1
    note("http", user, "%s:%d" % (host, port), method, path, uw)
    out = ["%s %s %s" % (method, path, version)]
    for k, v in headers:
        if k.lower() in ("proxy-authorization", "proxy-connection",
                         "connection", "keep-alive"):
            continue
        out.append("%s: %s" % (k, v))
    out.append("Connection: close")
    uw.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
    await uw.drain()

    async def answer():
        # the answer's head, marked Connection: close, then the rest
        while True:
            try:
                status, alines = await read_head(ur)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError, OSError):
                return
            if not status.split(" ")[1:2] or \
                    not status.split(" ")[1].startswith("1"):
                break
            writer.write(("\r\n".join([status] + alines) + "\r\n\r\n")
                         .encode("latin-1"))     # interim: as it is
            await writer.drain()
        keep = [ln for ln in alines if ln.split(":")[0].strip().lower()
                not in ("connection", "keep-alive")]
        writer.write(("\r\n".join([status] + keep + ["Connection: close"])
                      + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        await pipe(ur, writer)

    # the request body (and nothing after: the client may not reuse
    # this connection) goes on as it comes
    up = asyncio.ensure_future(pipe(reader, uw))
    await answer()
    up.cancel()
    for w in (uw,):
        try:
            w.close()
        except Exception:
            pass


async def read_head_with(first, reader):
    buf = first
    while b"\r\n\r\n" not in buf:
        data = await reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(buf, None)
        buf += data
        if len(buf) > 1 << 20:
            raise asyncio.LimitOverrunError("head too long", len(buf))
    i = buf.index(b"\r\n\r\n")
    rest = buf[i + 4:]
    if rest:
        reader._buffer[0:0] = rest     # give the body back
    lines = buf[:i].decode("latin-1").split("\r\n")
    return lines[0], lines[1:]


async def socks5(reader, writer):
    ver, n = await reader.readexactly(2)
    methods = await reader.readexactly(n)
    user = None
    if ARGS.user:
        if 2 not in methods:
            STATS["auth_failures"] += 1
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x02")
        await writer.drain()
        v, ulen = await reader.readexactly(2)
        u = (await reader.readexactly(ulen)).decode("utf-8", "replace")
        plen = (await reader.readexactly(1))[0]
        p = (await reader.readexactly(plen)).decode("utf-8", "replace")
        if v != 1 or u != ARGS.user or p != ARGS.password:
            STATS["auth_failures"] += 1
            writer.write(b"\x01\x01")
            return
        writer.write(b"\x01\x00")
        user = u
    else:
        if 0 not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(b"\x05\x00")
    await writer.drain()
    ver, cmd, _, atyp = await reader.readexactly(4)
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6,
                                await reader.readexactly(16))
    elif atyp == 3:
        ln = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(ln)).decode("idna")
    else:
        writer.write(b"\x05\x08\x00\x01" + b"\0" * 6)
        return
    port = struct.unpack(">H", await reader.readexactly(2))[0]
    if ver != 5 or cmd != 1:
        writer.write(b"\x05\x07\x00\x01" + b"\0" * 6)   # CONNECT only
        return
    try:
        ur, uw = await asyncio.open_connection(host, port)
    except OSError:
        STATS["errors"] += 1
        writer.write(b"\x05\x05\x00\x01" + b"\0" * 6)   # refused
        return
    STATS["socks"] += 1
    note("socks", user, "%s:%d" % (host, port), out=uw)
    bound = uw.get_extra_info("sockname")
    try:
        addr = ipaddress.ip_address(bound[0])
        rep = (b"\x05\x00\x00" + (b"\x01" if addr.version == 4 else b"\x04")
               + addr.packed + struct.pack(">H", bound[1]))
    except (ValueError, TypeError):
        rep = b"\x05\x00\x00\x01" + b"\0" * 6
    writer.write(rep)
    await writer.drain()
    await splice(reader, writer, ur, uw)


async def handle(reader, writer):
    STATS["connections"] += 1
    try:
        first = await reader.read(1)
        if not first:
            return
        if first == b"\x05":
            reader._buffer[0:0] = first
            await socks5(reader, writer)
        else:
            await http_proxy(first, reader, writer)
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            pass
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    except Exception as e:  # noqa: a bug here; keep serving
        STATS["errors"] += 1
        log("internal error: %r" % e)
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def serve():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", ARGS.port or 0,
                                        backlog=1024, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if ARGS.port_file:
        tmp = ARGS.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, ARGS.port_file)
    log("listening on 127.0.0.1:%d" % port)
    await stop.wait()
    os._exit(0)


def main(argv):
    global ARGS
    ap = argparse.ArgumentParser(description="loopback HTTP/SOCKS5 proxy")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--user")
    ap.add_argument("--password", default="")
    ap.add_argument("--quiet", action="store_true")
    ARGS = ap.parse_args(argv)
    reset_stats()
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
