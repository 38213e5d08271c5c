// anthropic.mjs - the official @anthropic-ai/sdk npm package against
// qrelayd and the fake upstream: text, streaming (raw events and the
// stream helper), tool_use round trips, images, thinking, usage,
// count_tokens, what current Claude Code sends, errors. See lib.mjs.

import Anthropic from '@anthropic-ai/sdk';
import {
  BASE, KEY, check, finish, marker, script, upstreamFor, currentUser,
  assertPaired, textEvents, END, PNG_B64, assert, countingFetch,
} from './lib.mjs';

const MODEL = process.env.QR_ANTHROPIC_MODEL || 'claude-sonnet-4-6';
const client = new Anthropic({ baseURL: BASE, apiKey: KEY, maxRetries: 0, timeout: 30000 });

const weatherTool = {
  name: 'get_weather',
  description: 'Current weather for a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['C', 'F'] } },
    required: ['city'],
  },
};

await check('anthropic text non-stream', async () => {
  const m = marker('atext');
  const answer = `Hello ${m}, from the fake upstream.`;
  await script(m, [{ events: [...textEvents(answer, 5), ...END] }]);
  const r = await client.messages.create({
    model: MODEL, max_tokens: 1024, system: 'You are terse.',
    messages: [{ role: 'user', content: `Say hello ${m}` }],
  });
  assert.equal(r.type, 'message');
  assert.equal(r.role, 'assistant');
  assert.ok(r.id && r.id.startsWith('msg_'), `id ${r.id}`);
  assert.equal(r.content.length, 1, JSON.stringify(r.content));
  assert.equal(r.content[0].type, 'text');
  assert.equal(r.content[0].text, answer);
  assert.equal(r.stop_reason, 'end_turn');
  assert.ok(r.usage.input_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
  assert.ok(r.usage.output_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1);
  assert.ok(currentUser(up[0]).content.includes(`Say hello ${m}`));
  assert.ok(JSON.stringify(up[0].body).includes('You are terse.'), 'system prompt not sent upstream');
});

await check('anthropic raw stream events', async () => {
  const m = marker('araw');
  const answer = `Streamed ${m} in many small pieces, one after another.`;
  await script(m, [{ events: [...textEvents(answer, 12), ...END], chunk: 'random' }]);
  const stream = await client.messages.create({
    model: MODEL, max_tokens: 1024, stream: true,
    messages: [{ role: 'user', content: `Stream ${m}` }],
  });
  const types = [];
  let text = '';
  let stop = null;
  let inTok = 0;
  let outTok = 0;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'message_start') inTok = ev.message.usage.input_tokens;
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
    if (ev.type === 'message_delta') { stop = ev.delta.stop_reason; outTok = ev.usage.output_tokens; }
  }
  const t = types.filter((x) => x !== 'ping');
  assert.equal(t[0], 'message_start');
  assert.equal(t[t.length - 1], 'message_stop');
  assert.equal(t[t.length - 2], 'message_delta');
  assert.ok(t.includes('content_block_start') && t.includes('content_block_stop'));
  assert.equal(text, answer);
  assert.equal(stop, 'end_turn');
  assert.ok(inTok > 0, 'message_start input_tokens');
  assert.ok(outTok > 0, 'message_delta output_tokens');
});

await check('anthropic stream helper finalMessage + text events', async () => {
  const m = marker('ahelper');
  const answer = `helper ${m} works fine`;
  await script(m, [{ events: [...textEvents(answer, 6), ...END] }]);
  const s = client.messages.stream({
    model: MODEL, max_tokens: 512, messages: [{ role: 'user', content: `helper ${m}` }],
  });
  let seen = '';
  s.on('text', (d) => { seen += d; });
  const fin = await s.finalMessage();
  assert.equal(seen, answer);
  assert.equal(fin.content[0].type, 'text');
  assert.equal(fin.content[0].text, answer);
  assert.equal(fin.stop_reason, 'end_turn');
  assert.ok(fin.usage.output_tokens > 0);
});

async function toolRoundTrip(stream) {
  const m = marker(stream ? 'atools' : 'atool');
  const id = `tooluse_${m}`;
  await script(m, [{
    events: [{ text: 'Checking. ' }, { tool: { id, name: 'get_weather', input: '{"city":"Paris","unit":"C"}', parts: 4 } }, ...END],
    chunk: stream ? 'random' : 0,
  }]);
  const messages = [{ role: 'user', content: `Weather in Paris? ${m}` }];
  const params = { model: MODEL, max_tokens: 1024, tools: [weatherTool], messages };
  const r1 = stream ? await client.messages.stream(params).finalMessage()
    : await client.messages.create(params);
  assert.equal(r1.stop_reason, 'tool_use');
  const tu = r1.content.filter((b) => b.type === 'tool_use');
  assert.equal(tu.length, 1, JSON.stringify(r1.content));
  assert.equal(tu[0].id, id);
  assert.equal(tu[0].name, 'get_weather');
  assert.deepEqual(tu[0].input, { city: 'Paris', unit: 'C' });
  const txt = r1.content.find((b) => b.type === 'text');
  assert.ok(txt && txt.text === 'Checking. ', `text block: ${JSON.stringify(r1.content)}`);
  let up = await upstreamFor(m);
  assert.equal(up.length, 1);
  const tools = currentUser(up[0]).userInputMessageContext.tools;
  assert.ok(tools.some((t) => t.toolSpecification && t.toolSpecification.name === 'get_weather'),
    'get_weather not among the upstream tools');

  const m2 = marker('atool2');
  const answer = `18 degrees in Paris ${m2}.`;
  await script(m2, [{ events: [...textEvents(answer), ...END] }]);
  messages.push({ role: 'assistant', content: r1.content });
  messages.push({
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: id, content: `18C and sunny ${m2}` }],
  });
  const r2 = stream ? await client.messages.stream(params).finalMessage()
    : await client.messages.create(params);
  assert.equal(r2.content[0].text, answer);
  assert.equal(r2.stop_reason, 'end_turn');
  up = await upstreamFor(m2);
  assert.equal(up.length, 1, 'upstream requests with the tool result');
  assertPaired(up[0], id, 'get_weather', { city: 'Paris', unit: 'C' }, `18C and sunny ${m2}`);
}

await check('anthropic tool_use round trip (non-stream)', () => toolRoundTrip(false));
await check('anthropic tool_use round trip (stream, input_json_delta)', () => toolRoundTrip(true));

await check('anthropic tool_result as blocks with is_error', async () => {
  const m = marker('aterr');
  const id = `tooluse_${m}`;
  await script(m, [{ events: [{ text: `ok ${m}` }, ...END] }]);
  const r = await client.messages.create({
    model: MODEL, max_tokens: 256, tools: [weatherTool],
    messages: [
      { role: 'user', content: 'Weather in Rome?' },
      { role: 'assistant', content: [{ type: 'tool_use', id, name: 'get_weather', input: { city: 'Rome' } }] },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: id, is_error: true, content: [{ type: 'text', text: `service down ${m}` }] },
          { type: 'text', text: 'Try again later then.' },
        ],
      },
    ],
  });
  assert.equal(r.content[0].text, `ok ${m}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1);
  assertPaired(up[0], id, 'get_weather', { city: 'Rome' }, `service down ${m}`);
  const tr = currentUser(up[0]).userInputMessageContext.toolResults.find((t) => t.toolUseId === id);
  assert.equal(tr.status, 'error', `toolResult status: ${JSON.stringify(tr)}`);
});

await check('anthropic image base64', async () => {
  const m = marker('aimg');
  await script(m, [{ events: [{ text: `A red square ${m}` }, ...END] }]);
  const r = await client.messages.create({
    model: MODEL, max_tokens: 256,
    messages: [{
      role: 'user',
      content: [
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_B64 } },
        { type: 'text', text: `What is this? ${m}` },
      ],
    }],
  });
  assert.equal(r.content[0].text, `A red square ${m}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1);
  const u = currentUser(up[0]);
  assert.ok(Array.isArray(u.images) && u.images.length === 1, `images: ${JSON.stringify(u.images)}`);
  assert.equal(u.images[0].format, 'png');
  assert.equal(u.images[0].source.bytes, PNG_B64);
});

await check('anthropic thinking blocks (non-stream)', async () => {
  const m = marker('athink');
  await script(m, [{ events: [{ text: '<thinking>\nI weigh ' }, { text: `the options ${m}.` }, { text: '\n</thinking>\n\n' }, { text: `The answer is 42 ${m}.` }, ...END] }]);
  const r = await client.messages.create({
    model: MODEL, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 2048 },
    messages: [{ role: 'user', content: `Think ${m}` }],
  });
  assert.equal(r.content.length, 2, JSON.stringify(r.content));
  assert.equal(r.content[0].type, 'thinking');
  assert.ok(r.content[0].thinking.includes(`I weigh the options ${m}.`), JSON.stringify(r.content[0]));
  assert.ok(!r.content[0].thinking.includes('<thinking>'), 'tag inside the thinking block');
  assert.equal(r.content[1].type, 'text');
  assert.equal(r.content[1].text, `The answer is 42 ${m}.`);
  const up = await upstreamFor(m);
  assert.ok(JSON.stringify(up[0].body).includes('<thinking_mode>'), 'thinking was not asked of the upstream');
});

await check('anthropic thinking streamed (thinking_delta) and sent back', async () => {
  const m = marker('athinks');
  await script(m, [{
    events: [{ text: '<thin' }, { text: `king>\nStep one ${m}, ` }, { text: 'step two.</thi' }, { text: 'nking>\n\nDone.' }, ...END],
    chunk: 'random',
  }]);
  const params = {
    model: MODEL, max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 1024 },
    messages: [{ role: 'user', content: `Think ${m}` }],
  };
  const s = client.messages.stream(params);
  let thinking = '';
  s.on('thinking', (d) => { thinking += d; });
  const fin = await s.finalMessage();
  assert.ok(thinking.includes(`Step one ${m}, step two.`), `thinking deltas: ${JSON.stringify(thinking)}`);
  assert.equal(fin.content[0].type, 'thinking');
  const txt = fin.content.find((b) => b.type === 'text');
  assert.equal(txt && txt.text, 'Done.');
  // the thinking block goes back in the history, as clients do
  const m2 = marker('athinks2');
  await script(m2, [{ events: [{ text: `again ${m2}` }, ...END] }]);
  const r2 = await client.messages.create({
    ...params,
    messages: [...params.messages, { role: 'assistant', content: fin.content },
      { role: 'user', content: `More ${m2}` }],
  });
  assert.equal(r2.content.find((b) => b.type === 'text').text, `again ${m2}`);
  const up = await upstreamFor(m2);
  assert.equal(up.length, 1);
});

await check('anthropic count_tokens', async () => {
  const m = marker('acount');
  const small = await client.messages.countTokens({
    model: MODEL, messages: [{ role: 'user', content: `Hi ${m}` }],
  });
  const big = await client.messages.countTokens({
    model: MODEL, system: 'You are a careful assistant. '.repeat(20), tools: [weatherTool],
    messages: [{ role: 'user', content: `Hi ${m} `.repeat(200) }],
  });
  assert.ok(Number.isInteger(small.input_tokens) && small.input_tokens >= 1, JSON.stringify(small));
  assert.ok(big.input_tokens > small.input_tokens + 200, `small ${small.input_tokens} big ${big.input_tokens}`);
  assert.equal((await upstreamFor(m)).length, 0, 'count_tokens went upstream');
});

await check('anthropic Claude Code style request (?beta=true, system role, adaptive thinking, cache_control)', async () => {
  const m = marker('acc');
  await script(m, [{ events: [...textEvents(`cc ${m}`), ...END] }]);
  const stream = await client.beta.messages.create({
    model: 'claude-opus-5-5',
    max_tokens: 128000,
    stream: true,
    betas: ['claude-code-20250219', 'interleaved-thinking-2025-05-14', 'context-management-2025-06-27'],
    system: [
      { type: 'text', text: 'x-anthropic-billing-header: cc_version=2.1.332;' },
      { type: 'text', text: 'You are a Claude agent.', cache_control: { type: 'ephemeral' } },
    ],
    messages: [
      { role: 'user', content: [{ type: 'text', text: '<system-reminder>be nice</system-reminder>' }, { type: 'text', text: `say hi ${m}` }] },
      { role: 'system', content: [{ type: 'text', text: '# Environment\nPlatform: linux', cache_control: { type: 'ephemeral' } }] },
    ],
    thinking: { type: 'adaptive', display: 'omitted' },
    context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }] },
    output_config: { effort: 'medium' },
    metadata: { user_id: '{"device_id":"x","session_id":"y"}' },
    tools: [{ ...weatherTool, cache_control: { type: 'ephemeral' } },
      { name: 'DeferredToolPlaceholder', description: 'never call', input_schema: { type: 'object', properties: {} }, defer_loading: true }],
  }, { query: { beta: 'true' } });   // the path Claude Code uses
  let text = '';
  for await (const ev of stream) {
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  assert.equal(text, `cc ${m}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1);
  const body = JSON.stringify(up[0].body);
  assert.ok(body.includes('Platform: linux'), 'the role:system message did not reach the upstream');
  assert.ok(body.includes('You are a Claude agent.'), 'the system prompt did not reach the upstream');
});

await check('anthropic unknown model -> BadRequestError 400, nothing upstream', async () => {
  const m = marker('abadmodel');
  let err = null;
  try {
    await client.messages.create({ model: 'no-such-model-qrelay', max_tokens: 10, messages: [{ role: 'user', content: `x ${m}` }] });
  } catch (e) { err = e; }
  assert.ok(err instanceof Anthropic.BadRequestError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 400);
  assert.equal(err.error && err.error.type, 'error', JSON.stringify(err.error));
  assert.equal(err.error.error.type, 'invalid_request_error');
  assert.equal((await upstreamFor(m)).length, 0, 'a rejected request reached the upstream');
});

await check('anthropic tool_result without its tool_use -> 400', async () => {
  const m = marker('aorphan');
  let err = null;
  try {
    await client.messages.create({
      model: MODEL, max_tokens: 10,
      messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_nowhere', content: `x ${m}` }] }],
    });
  } catch (e) { err = e; }
  assert.ok(err instanceof Anthropic.BadRequestError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal((await upstreamFor(m)).length, 0, 'a rejected request reached the upstream');
});

await check('anthropic upstream 429 -> RateLimitError after retries', async () => {
  const m = marker('a429');
  const stats = {};
  const c = new Anthropic({ baseURL: BASE, apiKey: KEY, maxRetries: 1, timeout: 30000, fetch: countingFetch(stats) });
  const r429 = { status: 429, body: { __type: 'com.amazon.aws.codewhisperer#ThrottlingException', message: 'Rate exceeded' } };
  await script(m, [{ ...r429, times: -1 }]);   // every try, the relay's own retries too
  let err = null;
  try {
    await c.messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: `busy ${m}` }] });
  } catch (e) { err = e; }
  assert.ok(err instanceof Anthropic.RateLimitError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 429);
  assert.equal(err.error && err.error.error && err.error.error.type, 'rate_limit_error', JSON.stringify(err.error));
  assert.equal(stats.calls, 2, 'HTTP requests the SDK made (maxRetries 1)');
  assert.ok(stats.retryAfter[0] && Number(stats.retryAfter[0]) > 0, `Retry-After: ${stats.retryAfter[0]}`);
  // the one account cools down after the upstream's 429: the SDK's
  // retry is answered by qrelayd, with when to come back, and the
  // upstream is not asked again meanwhile
  assert.ok(stats.retryAfter[1] && Number(stats.retryAfter[1]) > 0, `Retry-After of the retry: ${stats.retryAfter[1]}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1, `upstream requests while the account cools down`);
  // the checks after this one need the account back
  await new Promise((res) => setTimeout(res, 1000 * Number(stats.retryAfter[1]) + 250));
});

await check('anthropic exception mid-stream -> error event, no clean end_turn', async () => {
  const m = marker('aexc');
  await script(m, [{ events: [{ text: `partial ${m}` }, { exception: 'ThrottlingException', message: 'slow down' }] }]);
  const stream = await client.messages.create({
    model: MODEL, max_tokens: 100, stream: true, messages: [{ role: 'user', content: `go ${m}` }],
  });
  let err = null;
  let stop = null;
  try {
    for await (const ev of stream) {
      if (ev.type === 'message_delta') stop = ev.delta.stop_reason;
    }
  } catch (e) { err = e; }
  assert.ok(err, `the stream ended cleanly (stop_reason ${stop})`);
  assert.notEqual(stop, 'end_turn');
});

await check('anthropic bad key -> AuthenticationError 401', async () => {
  const bad = new Anthropic({ baseURL: BASE, apiKey: 'sk-qr-not-a-real-key-0000000000', maxRetries: 0 });
  let err = null;
  try {
    await bad.messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });
  } catch (e) { err = e; }
  assert.ok(err instanceof Anthropic.AuthenticationError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 401);
  assert.equal(err.error && err.error.error && err.error.error.type, 'authentication_error', JSON.stringify(err.error));
});

await check('anthropic models.list', async () => {
  const page = await client.models.list();
  assert.ok(page.data.length > 0, 'no models');
  assert.ok(page.data.every((x) => x.type === 'model' && x.id), JSON.stringify(page.data[0]));
});

finish();
