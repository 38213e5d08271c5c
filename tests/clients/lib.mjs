// lib.mjs - shared by the real-client tests (openai.mjs, anthropic.mjs).
//
// tests/integration/test_clients.py starts the fake upstream and qrelayd,
// then runs each script with
//   QR_BASE  http://127.0.0.1:PORT         qrelayd
//   QR_KEY   a client API key qrelayd accepts
//   QR_FAKE  http://127.0.0.1:PORT         the fake upstream (control API)
// A script runs its checks in order; each prints one line, "ok NAME" or
// "FAIL NAME: why", and the script exits 1 if any failed. Every check
// scripts the fake with responses that match only its own marker, so a
// check that fails leaves nothing behind for the next one.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

export const BASE = need('QR_BASE');
export const KEY = need('QR_KEY');
export const FAKE = need('QR_FAKE');

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL setup: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

let failures = 0;
let ran = 0;
const only = process.env.QR_ONLY ? process.env.QR_ONLY.split(',') : null;

// Run one check; fn may be async and throws (assert) to fail.
export async function check(name, fn) {
  if (only && !only.some((s) => name.includes(s))) return;
  ran++;
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failures++;
    const why = (e && (e.stack || e.message)) ? String(e.message || e) : String(e);
    console.log(`FAIL ${name}: ${why.replace(/\s+/g, ' ').slice(0, 600)}`);
  }
}

export function finish() {
  if (ran === 0) {
    console.log('FAIL no check ran');
    process.exit(1);
  }
  process.exit(failures ? 1 : 0);
}

// A marker unique to one check: goes in the prompt and in the fake's
// "match" so the scripted answer goes to this check's request only.
export function marker(tag) {
  return `qr${tag}${randomBytes(4).toString('hex')}`;
}

async function fakeCall(method, path, body) {
  const r = await fetch(FAKE + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`fake ${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : null;
}

// Queue responses on the fake; each gets match = m unless it has one.
export async function script(m, responses) {
  await fakeCall('POST', '/_fake/script', {
    responses: responses.map((r) => ({ match: m, ...r })),
  });
}

export async function fakeRequests() {
  return fakeCall('GET', '/_fake/requests');
}

// The assistant requests (either upstream flavour) whose body contains
// the string m, in order.
export async function upstreamFor(m) {
  const all = await fakeRequests();
  return all.filter((r) => r.body && typeof r.body === 'object' &&
    r.body.conversationState && JSON.stringify(r.body).includes(m));
}

export function cs(rec) {
  return rec.body.conversationState;
}

export function currentUser(rec) {
  return cs(rec).currentMessage.userInputMessage;
}

// Every toolUse in the history's assistant messages.
export function historyToolUses(rec) {
  const out = [];
  for (const h of cs(rec).history || []) {
    const a = h.assistantResponseMessage;
    if (a && a.toolUses) out.push(...a.toolUses);
  }
  return out;
}

// toolResults of the current message and of the history's user messages.
export function allToolResults(rec) {
  const out = [];
  const take = (u) => {
    const c = u && u.userInputMessageContext;
    if (c && c.toolResults) out.push(...c.toolResults);
  };
  for (const h of cs(rec).history || []) take(h.userInputMessage);
  take(currentUser(rec));
  return out;
}

export function toolResultText(tr) {
  return (tr.content || []).map((c) => (c.text !== undefined ? c.text
    : JSON.stringify(c.json))).join('');
}

// Check that the upstream request rec pairs the tool result for id with
// the tool use of id (name, input), and that the result text has want.
export function assertPaired(rec, id, name, input, want) {
  const uses = historyToolUses(rec);
  const use = uses.find((u) => u.toolUseId === id);
  assert.ok(use, `no toolUse ${id} in the upstream history: ${JSON.stringify(uses)}`);
  assert.equal(use.name, name, 'toolUse name upstream');
  assert.deepEqual(use.input, input, 'toolUse input upstream');
  const cur = currentUser(rec);
  const trs = ((cur.userInputMessageContext || {}).toolResults) || [];
  const tr = trs.find((t) => t.toolUseId === id);
  assert.ok(tr, `no toolResult ${id} on currentMessage: ${JSON.stringify(cur).slice(0, 400)}`);
  assert.ok(toolResultText(tr).includes(want),
    `toolResult text ${JSON.stringify(toolResultText(tr))} lacks ${want}`);
  // the use comes in the last assistant turn of the history, right
  // before the result
  const hist = cs(rec).history || [];
  const last = hist[hist.length - 1];
  assert.ok(last && last.assistantResponseMessage &&
    (last.assistantResponseMessage.toolUses || []).some((u) => u.toolUseId === id),
    'the toolUse is not in the assistant turn right before the result');
  // every result has exactly one use
  for (const t of allToolResults(rec)) {
    assert.equal(uses.filter((u) => u.toolUseId === t.toolUseId).length, 1,
      `toolResult ${t.toolUseId} has no single matching toolUse`);
  }
}

// Text events the fake sends in several frames.
export function textEvents(s, parts = 4) {
  const n = Math.max(1, Math.ceil(s.length / parts));
  const ev = [];
  for (let i = 0; i < s.length; i += n) ev.push({ text: s.slice(i, i + n) });
  return ev;
}

export const END = [{ metering: 0.017 }, { context: 1.25 }];

// A 2x2 red PNG, valid (zlib, CRCs), so that a relay checking the magic
// bytes against the media type accepts it.
export const PNG_B64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==';

// A fetch for an SDK client that counts the HTTP requests the SDK makes
// and the Retry-After it was told. qrelayd says "Retry-After: 30" on a
// 429; so that the test does not sleep 30 s, the answer also gets
// retry-after-ms: 100, which the SDKs prefer to Retry-After.
export function countingFetch(stats) {
  stats.calls = 0;
  stats.retryAfter = [];
  return async (url, init) => {
    stats.calls++;
    const r = await fetch(url, init);
    if (r.status !== 429 && r.status < 500) return r;
    stats.retryAfter.push(r.headers.get('retry-after'));
    const h = new Headers(r.headers);
    h.set('retry-after-ms', '100');
    return new Response(await r.arrayBuffer(), { status: r.status, statusText: r.statusText, headers: h });
  };
}

export { assert };
