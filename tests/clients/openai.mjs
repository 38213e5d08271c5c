// openai.mjs - the official openai npm package against qrelayd and the
// fake upstream: text, streaming, tool round trips, images, reasoning,
// usage, errors. See lib.mjs for the environment and output format.

import OpenAI from 'openai';
import {
  BASE, KEY, check, finish, marker, script, upstreamFor, currentUser,
  assertPaired, textEvents, END, PNG_B64, assert, countingFetch,
} from './lib.mjs';

const MODEL = process.env.QR_OPENAI_MODEL || 'claude-sonnet-4-5';
const client = new OpenAI({ baseURL: BASE + '/v1', apiKey: KEY, maxRetries: 0, timeout: 30000 });

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['C', 'F'] } },
      required: ['city'],
    },
  },
};

await check('openai text non-stream', async () => {
  const m = marker('otext');
  const answer = `Hello ${m}, from the fake upstream.`;
  await script(m, [{ events: [...textEvents(answer, 5), ...END] }]);
  const r = await client.chat.completions.create({
    model: MODEL,
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: `Say hello ${m}` },
    ],
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, answer);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.id, 'no id');
  assert.ok(r.usage && r.usage.prompt_tokens > 0, `prompt_tokens: ${JSON.stringify(r.usage)}`);
  assert.ok(r.usage.completion_tokens > 0, `completion_tokens: ${JSON.stringify(r.usage)}`);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1, 'upstream requests for this prompt');
  assert.ok(currentUser(up[0]).content.includes(`Say hello ${m}`), 'prompt not in currentMessage');
  assert.ok(JSON.stringify(up[0].body).includes('You are terse.'), 'system prompt not sent upstream');
});

await check('openai text stream + include_usage', async () => {
  const m = marker('ostream');
  const answer = `Streamed ${m} in many small pieces, one after another.`;
  await script(m, [{ events: [...textEvents(answer, 12), ...END], chunk: 'random' }]);
  const stream = await client.chat.completions.create({
    model: MODEL,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: 'user', content: `Stream ${m}` }],
  });
  let text = '';
  let finish = null;
  let usage = null;
  let n = 0;
  let ids = new Set();
  let roleSeen = false;
  let afterUsage = 0;
  for await (const c of stream) {
    n++;
    if (usage) afterUsage++;
    ids.add(c.id);
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.usage) {
      usage = c.usage;
      assert.equal(c.choices.length, 0, 'the usage chunk has choices');
      continue;
    }
    const ch = c.choices[0];
    if (ch.delta.role) roleSeen = true;
    if (ch.delta.content) text += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(text, answer);
  assert.equal(finish, 'stop');
  assert.ok(roleSeen, 'no delta.role');
  assert.ok(n >= 3, `only ${n} chunks`);
  assert.equal(ids.size, 1, 'chunk ids differ');
  assert.ok(usage, 'no usage chunk');
  assert.equal(afterUsage, 0, 'chunks after the usage chunk');
  assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0, JSON.stringify(usage));
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
});

await check('openai stream without include_usage has no usage chunk', async () => {
  const m = marker('onousage');
  await script(m, [{ events: [...textEvents(`plain ${m}`), ...END] }]);
  const stream = await client.chat.completions.create({
    model: MODEL, stream: true, messages: [{ role: 'user', content: `Go ${m}` }],
  });
  let text = '';
  for await (const c of stream) {
    assert.ok(!c.usage, `usage without include_usage: ${JSON.stringify(c.usage)}`);
    if (c.choices[0] && c.choices[0].delta.content) text += c.choices[0].delta.content;
  }
  assert.equal(text, `plain ${m}`);
});

await check('openai tool round trip (non-stream)', async () => {
  const m = marker('otool');
  const id = `tooluse_${m}`;
  await script(m, [
    { events: [{ text: 'Let me check. ' }, { tool: { id, name: 'get_weather', input: '{"city":"Paris","unit":"C"}', parts: 4 } }, ...END] },
  ]);
  const messages = [{ role: 'user', content: `Weather in Paris? ${m}` }];
  const r1 = await client.chat.completions.create({ model: MODEL, messages, tools: [weatherTool] });
  const msg = r1.choices[0].message;
  assert.equal(r1.choices[0].finish_reason, 'tool_calls');
  assert.ok(msg.tool_calls && msg.tool_calls.length === 1, `tool_calls: ${JSON.stringify(msg.tool_calls)}`);
  const tc = msg.tool_calls[0];
  assert.equal(tc.id, id);
  assert.equal(tc.type, 'function');
  assert.equal(tc.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(tc.function.arguments), { city: 'Paris', unit: 'C' });
  let up = await upstreamFor(m);
  assert.equal(up.length, 1);
  const tools = currentUser(up[0]).userInputMessageContext.tools;
  const spec = tools.find((t) => t.toolSpecification && t.toolSpecification.name === 'get_weather');
  assert.ok(spec, `get_weather not in upstream tools: ${JSON.stringify(tools).slice(0, 300)}`);
  assert.deepEqual(spec.toolSpecification.inputSchema.json.required, ['city']);

  const m2 = marker('otool2');
  const answer = `It is 18 degrees in Paris ${m2}.`;
  await script(m2, [{ events: [...textEvents(answer), ...END] }]);
  messages.push(msg, { role: 'tool', tool_call_id: id, content: `18C and sunny ${m2}` });
  const r2 = await client.chat.completions.create({ model: MODEL, messages, tools: [weatherTool] });
  assert.equal(r2.choices[0].message.content, answer);
  assert.equal(r2.choices[0].finish_reason, 'stop');
  up = await upstreamFor(m2);
  assert.equal(up.length, 1, 'upstream requests with the tool result');
  assertPaired(up[0], id, 'get_weather', { city: 'Paris', unit: 'C' }, `18C and sunny ${m2}`);
});

await check('openai tool calls streamed in fragments (two calls)', async () => {
  const m = marker('otools');
  const id1 = `tooluse_a${m}`;
  const id2 = `tooluse_b${m}`;
  await script(m, [{
    events: [
      { tool: { id: id1, name: 'get_weather', input: '{"city":"Oslo"}', parts: 5 } },
      { tool: { id: id2, name: 'get_weather', input: '{"city":"Lima","unit":"F"}', parts: 3 } },
      ...END],
    chunk: 'random',
  }]);
  const stream = await client.chat.completions.create({
    model: MODEL, stream: true, tools: [weatherTool],
    messages: [{ role: 'user', content: `Oslo and Lima ${m}` }],
  });
  const calls = [];
  let finish = null;
  let frags = 0;
  for await (const c of stream) {
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.finish_reason) finish = ch.finish_reason;
    for (const t of ch.delta.tool_calls || []) {
      frags++;
      assert.equal(typeof t.index, 'number', 'tool_calls[].index');
      if (!calls[t.index]) {
        assert.ok(t.id, 'first fragment without id');
        calls[t.index] = { id: t.id, name: t.function.name, args: '' };
      } else {
        assert.ok(!t.id || t.id === calls[t.index].id, 'id changed');
      }
      calls[t.index].args += (t.function && t.function.arguments) || '';
    }
  }
  assert.equal(finish, 'tool_calls');
  assert.equal(calls.length, 2, JSON.stringify(calls));
  assert.ok(frags >= 3, `tool call in ${frags} fragments only`);
  assert.equal(calls[0].id, id1);
  assert.equal(calls[1].id, id2);
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].args), { city: 'Oslo' });
  assert.deepEqual(JSON.parse(calls[1].args), { city: 'Lima', unit: 'F' });

  // both results back: each must reach the fake paired with its use
  const m2 = marker('otools2');
  await script(m2, [{ events: [{ text: `Done ${m2}` }, ...END] }]);
  const r2 = await client.chat.completions.create({
    model: MODEL, tools: [weatherTool],
    messages: [
      { role: 'user', content: `Oslo and Lima ${m}` },
      {
        role: 'assistant', content: null,
        tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })),
      },
      { role: 'tool', tool_call_id: id1, content: `Oslo 3C ${m2}` },
      { role: 'tool', tool_call_id: id2, content: `Lima 80F ${m2}` },
    ],
  });
  assert.equal(r2.choices[0].message.content, `Done ${m2}`);
  const up = await upstreamFor(m2);
  assert.equal(up.length, 1);
  assertPaired(up[0], id1, 'get_weather', { city: 'Oslo' }, `Oslo 3C ${m2}`);
  assertPaired(up[0], id2, 'get_weather', { city: 'Lima', unit: 'F' }, `Lima 80F ${m2}`);
});

await check('openai stream helper finalChatCompletion', async () => {
  const m = marker('ohelper');
  await script(m, [{ events: [...textEvents(`helper ${m} works`, 6), ...END] }]);
  const s = client.chat.completions.stream({
    model: MODEL, messages: [{ role: 'user', content: `helper ${m}` }],
  });
  const fin = await s.finalChatCompletion();
  assert.equal(fin.choices[0].message.content, `helper ${m} works`);
  assert.equal(fin.choices[0].finish_reason, 'stop');
});

await check('openai image as data URL', async () => {
  const m = marker('oimg');
  await script(m, [{ events: [{ text: `A red square ${m}` }, ...END] }]);
  const r = await client.chat.completions.create({
    model: MODEL,
    messages: [{
      role: 'user',
      content: [
        { type: 'text', text: `What is this? ${m}` },
        { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_B64}` } },
      ],
    }],
  });
  assert.equal(r.choices[0].message.content, `A red square ${m}`);
  const up = await upstreamFor(m);
  assert.equal(up.length, 1);
  const u = currentUser(up[0]);
  assert.ok(Array.isArray(u.images) && u.images.length === 1, `images: ${JSON.stringify(u.images)}`);
  assert.equal(u.images[0].format, 'png');
  assert.equal(u.images[0].source.bytes, PNG_B64);
  assert.ok(u.content.includes(`What is this? ${m}`));
});

await check('openai reasoning_content from thinking (non-stream)', async () => {
  const m = marker('othink');
  await script(m, [{ events: [{ text: '<thinking>\nI weigh ' }, { text: `the options ${m}.` }, { text: '\n</thinking>\n\n' }, { text: `The answer is 42 ${m}.` }, ...END] }]);
  const r = await client.chat.completions.create({
    model: MODEL, reasoning_effort: 'high',
    messages: [{ role: 'user', content: `Think ${m}` }],
  });
  const msg = r.choices[0].message;
  assert.equal(msg.content, `The answer is 42 ${m}.`);
  assert.ok(typeof msg.reasoning_content === 'string' && msg.reasoning_content.includes(`I weigh the options ${m}.`),
    `reasoning_content: ${JSON.stringify(msg.reasoning_content)}`);
  assert.ok(!msg.content.includes('<thinking>'), 'thinking tag leaked into content');
  const up = await upstreamFor(m);
  assert.ok(JSON.stringify(up[0].body).includes('<thinking_mode>'), 'thinking was not asked of the upstream');
});

await check('openai reasoning_content streamed', async () => {
  const m = marker('othinks');
  await script(m, [{ events: [{ text: '<thin' }, { text: `king>\nStep one ${m}, ` }, { text: 'step two.</thi' }, { text: 'nking>\n\nDone.' }, ...END], chunk: 'random' }]);
  const stream = await client.chat.completions.create({
    model: MODEL, reasoning_effort: 'medium', stream: true,
    messages: [{ role: 'user', content: `Think ${m}` }],
  });
  let reasoning = '';
  let text = '';
  for await (const c of stream) {
    const d = c.choices[0] && c.choices[0].delta;
    if (!d) continue;
    if (d.reasoning_content) reasoning += d.reasoning_content;
    if (d.content) text += d.content;
  }
  assert.ok(reasoning.includes(`Step one ${m}, step two.`), `reasoning: ${JSON.stringify(reasoning)}`);
  assert.equal(text, 'Done.');
});

await check('openai unknown model -> BadRequestError 400, nothing upstream', async () => {
  const m = marker('obadmodel');
  let err = null;
  try {
    await client.chat.completions.create({
      model: 'no-such-model-qrelay', messages: [{ role: 'user', content: `x ${m}` }],
    });
  } catch (e) { err = e; }
  assert.ok(err instanceof OpenAI.BadRequestError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 400);
  assert.ok(err.error && typeof err.error.message === 'string' && err.error.message.length > 0,
    `error body: ${JSON.stringify(err.error)}`);
  assert.equal((await upstreamFor(m)).length, 0, 'a rejected request reached the upstream');
});

await check('openai bad request body -> BadRequestError 400', async () => {
  let err = null;
  try {
    await client.chat.completions.create({ model: MODEL, messages: [] });
  } catch (e) { err = e; }
  assert.ok(err instanceof OpenAI.BadRequestError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 400);
});

await check('openai upstream 429 -> RateLimitError after retries', async () => {
  const m = marker('o429');
  const stats = {};
  const c429 = new OpenAI({ baseURL: BASE + '/v1', apiKey: KEY, maxRetries: 1, timeout: 30000, fetch: countingFetch(stats) });
  const r429 = { status: 429, body: { __type: 'com.amazon.aws.codewhisperer#ThrottlingException', message: 'Rate exceeded' } };
  await script(m, [{ ...r429, times: -1 }]);   // every try, the relay's own retries too
  let err = null;
  try {
    await c429.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `busy ${m}` }] });
  } catch (e) { err = e; }
  assert.ok(err instanceof OpenAI.RateLimitError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 429);
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

await check('openai bad key -> AuthenticationError 401', async () => {
  const bad = new OpenAI({ baseURL: BASE + '/v1', apiKey: 'sk-qr-not-a-real-key-0000000000', maxRetries: 0 });
  let err = null;
  try {
    await bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
  } catch (e) { err = e; }
  assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err && err.constructor.name}: ${err}`);
  assert.equal(err.status, 401);
});

await check('openai models.list', async () => {
  const page = await client.models.list();
  const ids = page.data.map((x) => x.id);
  assert.ok(ids.length > 0, 'no models');
  assert.ok(page.data.every((x) => x.object === 'model'), JSON.stringify(page.data[0]));
});

finish();
