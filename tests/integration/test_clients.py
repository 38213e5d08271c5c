"""Real clients against qrelayd and the fake upstream: the official
openai and @anthropic-ai/sdk npm packages (tests/clients/*.mjs) and
Claude Code itself (npm @anthropic-ai/claude-code, a native binary),
run headless.

The packages come from tests/clients/package.json and its lock file,
installed with `npm ci` into tests/clients/node_modules when that is
missing or stale.  This needs the npm registry once; if npm ci fails,
the tests fail (they never skip).

Each node script prints one line per check ("ok NAME" / "FAIL NAME:
why"); the lines are printed here too, and any FAIL fails the test.
The node scripts script the fake and read back what reached it
(/_fake/requests) themselves; the Claude Code tests do the same from
here.
"""

import fcntl
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from qrtest import (Daemon, REPO, check, eq, wait_for, TestFailure,
                    ADMIN_PASSWORD)
from qrfake import FakeUpstream

CLIENTS = os.path.join(REPO, "tests", "clients")
NODE_MODULES = os.path.join(CLIENTS, "node_modules")
NPM_TIMEOUT = 600
NODE_TIMEOUT = 240
CLAUDE_TIMEOUT = 180


# -- npm ------------------------------------------------------------------

def _installed_ok():
    """node_modules holds exactly the versions package.json pins."""
    with open(os.path.join(CLIENTS, "package.json")) as f:
        deps = json.load(f)["dependencies"]
    for name, want in deps.items():
        p = os.path.join(NODE_MODULES, name, "package.json")
        try:
            with open(p) as f:
                if json.load(f).get("version") != want:
                    return False
        except (OSError, ValueError):
            return False
    return True


def npm_ci():
    """Install tests/clients/node_modules with npm ci unless it is
    there already with the pinned versions.  A failure fails the test."""
    npm = shutil.which("npm")
    check(npm, "npm is not installed: the real-client tests need node "
          "and npm (Debian: apt-get install nodejs npm)")
    lock = open(os.path.join(tempfile.gettempdir(), "qrelay-npm-ci.lock"),
                "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two suites at once
        if _installed_ok():
            return
        print("npm ci in %s" % CLIENTS)
        t0 = time.monotonic()
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund",
                            "--loglevel=error"], cwd=CLIENTS,
                           capture_output=True, text=True,
                           timeout=NPM_TIMEOUT)
        if r.returncode != 0:
            raise TestFailure("npm ci failed (rc %d): %s" % (
                r.returncode, (r.stderr or r.stdout)[-1500:]))
        check(_installed_ok(), "npm ci succeeded but node_modules does "
              "not hold the pinned versions")
        print("npm ci done in %.1fs" % (time.monotonic() - t0))
    finally:
        lock.close()


def claude_binary():
    """The Claude Code native binary.  npm's postinstall copies it over
    bin/claude.exe; when install scripts were not run, that is a stub,
    and the binary is still in the platform package."""
    cands = [os.path.join(NODE_MODULES, ".bin", "claude")]
    base = os.path.join(NODE_MODULES, "@anthropic-ai")
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if d.startswith("claude-code-linux-"):
            cands.append(os.path.join(base, d, "claude"))
    tried = []
    home = tempfile.mkdtemp(prefix="qrclaude-version-")
    try:
        return _first_working(cands, home, tried)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _first_working(cands, home, tried):
    for c in cands:
        if not os.access(c, os.X_OK):
            continue
        try:
            r = subprocess.run([c, "--version"], capture_output=True,
                               text=True, timeout=60,
                               env=_claude_env("http://127.0.0.1:9", "x",
                                               home))
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append("%s: %s" % (c, e))
            continue
        if r.returncode == 0 and "Claude Code" in r.stdout:
            return c
        tried.append("%s: rc %d %s" % (c, r.returncode,
                                       (r.stdout + r.stderr)[:200]))
    raise TestFailure("no working claude binary in node_modules: %s"
                      % "; ".join(tried))


# -- set-up ---------------------------------------------------------------

def setup():
    """The fake, qrelayd pointed at it with one account whose token the
    refresher has fetched, and a client key: (fake, daemon, key)."""
    fake = FakeUpstream()
    d = Daemon(upstream=fake, env={"QRELAYD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    tok = d.login()
    rt = fake.add_account(kind="idc", clientId="cid-clients",
                          clientSecret="csec-clients")
    r = d.admin("POST", "/v2/accounts", tok, {
        "type": "idc", "label": "clients", "refreshToken": rt,
        "clientId": "cid-clients", "clientSecret": "csec-clients",
        "region": "us-east-1"})
    check(r.status in (200, 201), "POST /v2/accounts: %d %r"
          % (r.status, r.body))

    def refreshed():
        return any(q["path"] in ("/token", "/refreshToken")
                   and q["status"] == 200 for q in fake.requests())
    wait_for(refreshed, timeout=15, what="the account refreshed by the fake")
    time.sleep(0.3)     # the refresher publishes to the shared table
    key = d.add_key(tok, name="clients")["key"]
    return fake, d, key


def run_node(script, d, fake, key):
    """Run tests/clients/<script>; print its lines; fail on any FAIL."""
    node = shutil.which("node")
    check(node, "node is not installed")
    env = dict(os.environ)
    for k in list(env):     # the SDKs read these; only ours count
        if k.startswith(("OPENAI_", "ANTHROPIC_")) or \
                k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            env.pop(k)
    env.update({"QR_BASE": "http://127.0.0.1:%d" % d.port, "QR_KEY": key,
                "QR_FAKE": fake.url, "NO_PROXY": "127.0.0.1,localhost"})
    try:
        r = subprocess.run([node, os.path.join(CLIENTS, script)],
                           cwd=CLIENTS, env=env, capture_output=True,
                           text=True, timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else \
            (e.stdout or "")
        print(out)
        raise TestFailure("%s timed out after %ds" % (script, NODE_TIMEOUT))
    lines = r.stdout.splitlines()
    for ln in lines:
        print("  %s: %s" % (script, ln))
    if r.stderr.strip():
        print("  %s stderr: %s" % (script, r.stderr.strip()[-2000:]))
    fails = [ln for ln in lines if ln.startswith("FAIL")]
    oks = [ln for ln in lines if ln.startswith("ok ")]
    check(not fails, "%s: %d of %d checks failed, first: %s"
          % (script, len(fails), len(fails) + len(oks),
             fails[0][:300] if fails else ""))
    check(oks, "%s printed no check (rc %d): %s"
          % (script, r.returncode, r.stderr.strip()[-300:]))
    eq(r.returncode, 0, "%s exit status" % script)


# -- Claude Code ----------------------------------------------------------

def _claude_env(base, key, home):
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "SHELL": "/bin/bash",
        "LANG": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
        "ANTHROPIC_BASE_URL": base,
        "ANTHROPIC_API_KEY": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def run_claude(d, key, prompt, *args):
    """claude -p PROMPT --output-format json in a fresh HOME and working
    directory; returns (parsed JSON, workdir)."""
    claude = claude_binary()
    home = tempfile.mkdtemp(prefix="qrclaude-home-", dir=d.tmp)
    work = tempfile.mkdtemp(prefix="qrclaude-work-", dir=d.tmp)
    argv = [claude, "-p", prompt, "--output-format", "json"] + list(args)
    env = _claude_env("http://127.0.0.1:%d" % d.port, key, home)
    model = os.environ.get("QR_CLAUDE_MODEL")
    if model:
        argv += ["--model", model]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, cwd=work, env=env, capture_output=True,
                           text=True, timeout=CLAUDE_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestFailure("claude -p timed out after %ds" % CLAUDE_TIMEOUT)
    print("claude -p ran in %.1fs, rc %d" % (time.monotonic() - t0,
                                             r.returncode))
    try:
        out = json.loads(r.stdout)
    except ValueError:
        raise TestFailure("claude -p printed no JSON (rc %d): stdout %r "
                          "stderr %r" % (r.returncode, r.stdout[-500:],
                                         r.stderr[-500:]))
    print("claude result: %s" % json.dumps(
        {k: out.get(k) for k in ("type", "subtype", "is_error", "result",
                                 "num_turns", "api_error_status",
                                 "permission_denials")})[:1000])
    check(not out.get("is_error"), "claude reported an error: %r (api "
          "status %r)" % (out.get("result"), out.get("api_error_status")))
    eq(r.returncode, 0, "claude exit status (stderr %r)" % r.stderr[-300:])
    return out, work


def assistant_calls(fake, marker):
    return [q for q in fake.requests()
            if isinstance(q.get("body"), dict)
            and "conversationState" in q["body"]
            and marker in json.dumps(q["body"])]


def _tool_results(cs):
    out = []
    for h in cs.get("history") or []:
        u = h.get("userInputMessage") or {}
        out += (u.get("userInputMessageContext") or {}).get("toolResults") \
            or []
    cur = cs["currentMessage"]["userInputMessage"]
    out += (cur.get("userInputMessageContext") or {}).get("toolResults") \
        or []
    return out


def _result_text(tr):
    return "".join(c["text"] if "text" in c else json.dumps(c.get("json"))
                   for c in tr.get("content") or [])


# -- the tests ------------------------------------------------------------

def test_npm_ci():
    """First, so that a slow first install is charged to one test."""
    npm_ci()
    claude_binary()


def test_openai_sdk():
    npm_ci()
    fake, d, key = setup()
    run_node("openai.mjs", d, fake, key)


def test_anthropic_sdk():
    npm_ci()
    fake, d, key = setup()
    run_node("anthropic.mjs", d, fake, key)


def test_claude_code_prompt():
    npm_ci()
    fake, d, key = setup()
    m = "qrcc%08x" % random.getrandbits(32)
    answer = "Hi from the fake upstream, %s." % m
    fake.script({"match": m, "events": [
        {"text": "Hi from the fake "}, {"text": "upstream, %s." % m},
        {"metering": 0.02}, {"context": 2.5}], "chunk": "random"})
    out, _ = run_claude(d, key, "Say hi and repeat %s" % m)
    eq(out.get("result"), answer, "claude's JSON result")
    eq(out.get("num_turns"), 1, "num_turns")
    calls = assistant_calls(fake, m)
    eq(len(calls), 1, "upstream requests carrying the prompt")
    body = calls[0]["body"]
    cs = body["conversationState"]
    cur = cs["currentMessage"]["userInputMessage"]
    text = json.dumps(body)
    check(m in cur.get("content", ""), "the prompt is not in "
          "currentMessage: %r" % cur.get("content", "")[:300])
    # Claude Code's role:"system" message (the environment) and its
    # system prompt both reach the upstream
    check("Primary working directory" in text,
          "Claude Code's role:system message did not reach the upstream")
    check("Claude" in text and "agent" in text,
          "Claude Code's system prompt did not reach the upstream")
    tools = [t["toolSpecification"]["name"]
             for t in (cur.get("userInputMessageContext") or {})
             .get("tools") or [] if "toolSpecification" in t]
    check("Bash" in tools, "Bash not among the upstream tools: %r" % tools)
    model = cur.get("modelId", "")
    check("opus" in model.lower() or os.environ.get("QR_CLAUDE_MODEL"),
          "Claude Code's default model (an opus) mapped to %r" % model)


def test_claude_code_bash_tool():
    npm_ci()
    fake, d, key = setup()
    m = "qrcc%08x" % random.getrandbits(32)
    n = random.randint(100, 999)
    # the output differs from the command text: only running it makes it
    cmd = "echo qrelay-$((%d*7))-%s" % (n, m)
    output = "qrelay-%d-%s" % (n * 7, m)
    tool_id = "tooluse_%s" % m
    final = "The command printed %s." % output
    fake.script(
        {"match": m, "events": [
            {"text": "I will run it."},
            {"tool": {"id": tool_id, "name": "Bash", "parts": 3,
                      "input": json.dumps({
                          "command": cmd,
                          "description": "Print a marker"})}},
            {"metering": 0.02}, {"context": 2.5}]},
        {"match": output, "events": [{"text": final}, {"metering": 0.01},
                                     {"context": 2.6}]})
    out, work = run_claude(d, key, "Run the marker command for %s" % m,
                           "--allowedTools", "Bash")
    eq(out.get("permission_denials"), [], "permission denials")
    eq(out.get("result"), final, "claude's JSON result")
    eq(out.get("num_turns"), 2, "num_turns")
    calls = assistant_calls(fake, m)
    eq(len(calls), 2, "upstream requests of the session")
    cs = calls[1]["body"]["conversationState"]
    uses = [u for h in cs.get("history") or []
            for u in (h.get("assistantResponseMessage") or {})
            .get("toolUses") or []]
    use = [u for u in uses if u.get("toolUseId") == tool_id]
    check(len(use) == 1, "the Bash toolUse %s is not in the second "
          "request's history: %r" % (tool_id, uses))
    eq(use[0].get("name"), "Bash", "toolUse name")
    eq(use[0].get("input", {}).get("command"), cmd, "toolUse input.command")
    trs = [t for t in _tool_results(cs) if t.get("toolUseId") == tool_id]
    check(len(trs) == 1, "no single toolResult for %s: %r"
          % (tool_id, _tool_results(cs)))
    cur = cs["currentMessage"]["userInputMessage"]
    check(any(t.get("toolUseId") == tool_id for t in
              (cur.get("userInputMessageContext") or {})
              .get("toolResults") or []),
          "the toolResult is not on the current message")
    check(output in _result_text(trs[0]), "the command's output %r is not "
          "in the toolResult %r" % (output, trs[0]))
    check(trs[0].get("status", "success") == "success",
          "toolResult status %r" % trs[0].get("status"))
