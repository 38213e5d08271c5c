#!/usr/bin/env python3
"""run.py - the qrelayd integration suite runner.

    QRELAYD=src/qrelayd QRELAYCTL=src/qrelayctl python3 tests/integration/run.py [filter...]

Discovers tests/integration/test_*.py, and runs every test_* function
(in file order) in its own Python subprocess under a watchdog: a test
that hangs is killed after QRTEST_TIMEOUT seconds (default 60) and
counts as failed, and the daemons it started are killed.  Optional
arguments are substrings; only tests whose "module.function" name
contains one of them run.  Prints "PASS name (1.2s)", "FAIL name:
reason" (with the daemon's log tail) or "SKIP name: reason", and ends
with "N passed, N failed"; exit status 1 if any test failed.
"""

import ast
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = float(os.environ.get("QRTEST_TIMEOUT", "60"))


def discover():
    tests = []
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        mod = fn[:-3]
        with open(os.path.join(HERE, fn)) as f:
            tree = ast.parse(f.read(), fn)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and \
                    node.name.startswith("test_"):
                tests.append((mod, node.name))
    return tests


def child(mod, func, result_path):
    """Run one test in this process; write 'PASS', 'SKIP reason' or
    'FAIL reason' to result_path, and details to stdout."""
    sys.path.insert(0, HERE)
    import qrtest
    status, reason = "FAIL", "unknown"
    try:
        m = importlib.import_module(mod)
        getattr(m, func)()
        problems = qrtest.finish_all()
        if problems:
            raise qrtest.TestFailure("; ".join(problems))
        status, reason = "PASS", ""
    except qrtest.Skip as e:
        status, reason = "SKIP", str(e)
    except BaseException as e:  # noqa: report everything
        status = "FAIL"
        reason = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:400] \
            if not isinstance(e, qrtest.TestFailure) else \
            str(e).splitlines()[0][:400] if str(e) else "assertion failed"
        traceback.print_exc(file=sys.stdout)
        tails = qrtest.log_tails()
        if tails:
            print(tails)
    finally:
        sys.stdout.flush()
        try:
            qrtest.cleanup_all()
        except Exception:
            pass
    with open(result_path, "w") as f:
        f.write("%s %s" % (status, reason))
    return 0 if status != "FAIL" else 1


def kill_registered(registry):
    """Kill the daemons (and their children) a timed-out test started."""
    sys.path.insert(0, HERE)
    import qrtest
    try:
        with open(registry) as f:
            entries = [ln.split(None, 1) for ln in f if ln.strip()]
    except OSError:
        return ""
    tails = []
    for pid_s, tmp in entries:
        pid = int(pid_s)
        todo, kids = [pid], []
        while todo:
            p = todo.pop()
            for c in qrtest.children_of(p):
                kids.append(c)
                todo.append(c)
        for p in kids + [pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        tmp = tmp.strip()
        for name in ("stderr.log", "qrelayd.log"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
                tails.append("--- %s (last 40 lines)\n%s"
                             % (p, "\n".join(lines[-40:])))
        if tmp.startswith(tempfile.gettempdir()) and \
                not os.environ.get("QRTEST_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(tails)


def indent(text):
    return "\n".join("    " + ln for ln in text.rstrip().splitlines())


def main(argv):
    if len(argv) >= 4 and argv[0] == "--child":
        return child(argv[1], argv[2], argv[3])

    filters = [a for a in argv if not a.startswith("-")]
    tests = [(m, f) for m, f in discover()
             if not filters or any(x in "%s.%s" % (m, f) for x in filters)]
    for var in ("QRELAYD",):
        p = os.environ.get(var)
        if p and not os.access(p, os.X_OK):
            print("run.py: %s=%s is not an executable" % (var, p))
            print("0 passed, 1 failed")
            return 1

    passed = failed = skipped = 0
    failures = []
    t_all = time.monotonic()
    for mod, func in tests:
        name = "%s.%s" % (mod, func)
        fd, result_path = tempfile.mkstemp(prefix="qrtest-result-")
        os.close(fd)
        fd, registry = tempfile.mkstemp(prefix="qrtest-registry-")
        os.close(fd)
        env = dict(os.environ, QRTEST_REGISTRY=registry)
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                              "--child", mod, func, result_path],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            out, _ = p.communicate()
        tails = kill_registered(registry) if timed_out else ""
        dt = time.monotonic() - t0
        with open(result_path) as f:
            result = f.read()
        os.unlink(result_path)
        os.unlink(registry)
        out = out.decode("utf-8", "replace")
        if timed_out:
            status, reason = "FAIL", "timed out after %.0fs (hung)" % TIMEOUT
        elif not result:
            status, reason = "FAIL", "test process died (rc %s)" % p.returncode
        else:
            status, _, reason = result.partition(" ")
        if status == "PASS":
            passed += 1
            print("PASS %s (%.1fs)" % (name, dt))
        elif status == "SKIP":
            skipped += 1
            print("SKIP %s: %s" % (name, reason))
        else:
            failed += 1
            failures.append(name)
            print("FAIL %s: %s (%.1fs)" % (name, reason, dt))
            if out.strip():
                print(indent(out))
            if tails:
                print(indent(tails))
        sys.stdout.flush()
    if failures:
        print("failed: " + " ".join(failures))
    print("(%.0fs, %d skipped)" % (time.monotonic() - t_all, skipped))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
