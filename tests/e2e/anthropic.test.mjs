// The real kvault server driven by the official `@anthropic-ai/sdk` npm SDK.
// The model has random weights: text is gibberish, but greedy decoding is deterministic, so the
// tests check shapes, determinism, usage numbers, stop reasons and error classes, never meaning.
//
// Note: @anthropic-ai/sdk 1.x sends `apiKey` as `Authorization: Bearer <key>`; the tests that need
// the `x-api-key` header set it through defaultHeaders and drop Authorization (xApiKeyClient).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import {
  LONG_SYSTEM, WEATHER_SCHEMA, WEATHER_SCHEMA_UNBOUNDED, WEATHER_TOOL_DESCRIPTION, collect, eventually,
  pickStopSequence,
} from './common.mjs';
import { KEY_A, KEY_B, MODEL_ID, NO_AUTH, useServer } from './server.mjs';

const T = { timeout: 60_000 };
const AUTH_SKIP = NO_AUTH ? 'KVAULT_E2E_NO_AUTH=1: server started without --api-key' : false;

const WEATHER_TOOL = { name: 'get_weather', description: WEATHER_TOOL_DESCRIPTION, input_schema: WEATHER_SCHEMA };
// One call only: a random-weights model allowed parallel calls keeps starting new ones until max_tokens.
const FORCE_WEATHER = { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true };
// A 1x1 PNG.
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

function client(server, apiKey = KEY_A, opts = {}) {
  return new Anthropic({ apiKey, baseURL: server.anthropicBaseURL, maxRetries: 0, timeout: 60_000, ...opts });
}

/** A client that sends the key as `x-api-key` only (no Authorization header). */
function xApiKeyClient(server, apiKey) {
  return new Anthropic({
    apiKey,
    baseURL: server.anthropicBaseURL,
    maxRetries: 0,
    timeout: 60_000,
    defaultHeaders: { 'x-api-key': apiKey, Authorization: null },
  });
}

// Greedy (temperature 0, as the tests compare outputs; the server's default is 1, as Anthropic's).
function request(userText, extra = {}) {
  return {
    model: MODEL_ID,
    max_tokens: 32,
    temperature: 0,
    system: LONG_SYSTEM,
    messages: [{ role: 'user', content: userText }],
    ...extra,
  };
}

function textOf(message) {
  return message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

function assertUsage(usage, maxTokens) {
  assert.ok(usage, 'usage present');
  for (const field of ['input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens']) {
    assert.ok(Number.isInteger(usage[field]) && usage[field] >= 0, `usage.${field} = ${usage[field]}`);
  }
  assert.ok(usage.input_tokens > 0, `input_tokens ${usage.input_tokens} > 0 (the last prompt token is always computed)`);
  assert.ok(usage.output_tokens > 0, `output_tokens ${usage.output_tokens}`);
  assert.ok(usage.output_tokens <= maxTokens, `output_tokens ${usage.output_tokens} <= ${maxTokens}`);
}

/** Total prompt tokens, Anthropic style: uncached + read from cache + written to cache. */
function promptTokens(usage) {
  return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens;
}

function assertMessageShape(msg) {
  assert.equal(msg.type, 'message');
  assert.equal(msg.role, 'assistant');
  assert.match(msg.id, /^msg_./);
  assert.equal(msg.model, MODEL_ID);
  assert.ok(Array.isArray(msg.content));
}

const TEXT_EVENT_ORDER =
  /^message_start content_block_start( content_block_delta)* content_block_stop message_delta message_stop$/;
const ANY_EVENT_ORDER =
  /^message_start( content_block_start( content_block_delta)* content_block_stop)+ message_delta message_stop$/;

function eventTypes(events) {
  return events.map((e) => e.type).filter((t) => t !== 'ping').join(' ');
}

function assertAnthropicError(err, Class, status, type) {
  assert.ok(err instanceof Class, `expected ${Class.name}, got ${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, status);
  // err.error is the response body: {type: 'error', error: {type, message}}.
  assert.equal(err.error?.type, 'error', `body ${JSON.stringify(err.error)}`);
  assert.equal(err.error?.error?.type, type, `body ${JSON.stringify(err.error)}`);
  assert.equal(typeof err.error?.error?.message, 'string');
  return true;
}

describe('Anthropic SDK against kvault', () => {
  const server = useServer({ name: 'anthropic' });

  it('messages.create: message shape and usage', T, async () => {
    const msg = await client(server).messages.create(request('Hi'));
    assertMessageShape(msg);
    assert.ok(msg.content.length >= 1);
    assert.equal(msg.content[0].type, 'text');
    assert.equal(typeof msg.content[0].text, 'string');
    assert.ok(['end_turn', 'max_tokens'].includes(msg.stop_reason), `stop_reason ${msg.stop_reason}`);
    assert.equal(msg.stop_sequence, null);
    assertUsage(msg.usage, 32);
  });

  it('greedy decoding is deterministic, and system as text blocks equals the string form', T, async () => {
    const c = client(server);
    // Compared in the same cache state (resumed from the pool): a cold run and a resumed run can
    // round differently (docs/architecture.md, "Exactness").
    await c.messages.create(request('Where is the tea?'));
    const a = await c.messages.create(request('Where is the tea?'));
    const b = await c.messages.create(request('Where is the tea?'));
    assert.equal(textOf(b), textOf(a));
    const blocks = await c.messages.create(request('Where is the tea?', { system: [{ type: 'text', text: LONG_SYSTEM }] }));
    assert.equal(textOf(blocks), textOf(a));
    assert.equal(blocks.stop_reason, a.stop_reason);
    assert.equal(promptTokens(blocks.usage), promptTokens(a.usage));
  });

  it('messages.stream(): event order, and finalMessage() equals the non-streamed message', T, async () => {
    const c = client(server);
    const req = request('Which shelf holds the rope?');
    await c.messages.create(req);  // both compared requests then resume the same cached prompt
    const plain = await c.messages.create(req);
    const stream = c.messages.stream(req);
    const events = await collect(stream);
    const final = await stream.finalMessage();
    assert.match(eventTypes(events), TEXT_EVENT_ORDER);

    const start = events.find((e) => e.type === 'message_start');
    assertMessageShape(start.message);  // (its content is the SDK's snapshot, filled in as events arrive)
    assert.equal(typeof start.message.usage.input_tokens, 'number');

    const blockStart = events.find((e) => e.type === 'content_block_start');
    assert.equal(blockStart.index, 0);
    assert.equal(blockStart.content_block.type, 'text');
    for (const e of events.filter((x) => x.type === 'content_block_delta')) {
      assert.equal(e.delta.type, 'text_delta');
      assert.equal(e.index, 0);
    }
    const delta = events.find((e) => e.type === 'message_delta');
    assert.ok(['end_turn', 'max_tokens'].includes(delta.delta.stop_reason), `stop_reason ${delta.delta.stop_reason}`);
    assert.equal(delta.delta.stop_reason, plain.stop_reason);
    assert.equal(delta.usage.output_tokens, plain.usage.output_tokens);

    assertMessageShape(final);
    assert.equal(textOf(final), textOf(plain));
    assert.equal(final.stop_reason, plain.stop_reason);
    assert.equal(final.usage.output_tokens, plain.usage.output_tokens);
  });

  it('messages.create({stream: true}): raw events in order, text deltas concatenate to the message', T, async () => {
    const c = client(server);
    const req = request('Which shelf holds the rope?');
    await c.messages.create(req);  // both compared requests then resume the same cached prompt
    const plain = await c.messages.create(req);
    const events = await collect(await c.messages.create({ ...req, stream: true }));
    assert.match(eventTypes(events), TEXT_EVENT_ORDER);
    const start = events[0].message;
    assertMessageShape(start);
    assert.deepEqual(start.content, []);
    assert.equal(start.stop_reason, null);
    assert.ok(start.usage.input_tokens > 0);
    assert.equal(promptTokens(start.usage), promptTokens(plain.usage), 'message_start has the prompt usage');
    const blockStart = events.find((e) => e.type === 'content_block_start');
    assert.deepEqual(blockStart.content_block, { type: 'text', text: '' });
    const text = events.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    assert.equal(text, textOf(plain));
    const delta = events.find((e) => e.type === 'message_delta');
    assert.equal(delta.delta.stop_reason, plain.stop_reason);
    assert.equal(delta.usage.output_tokens, plain.usage.output_tokens);
  });

  it('multi-turn: the second turn reads the first turn\'s KV from the cache', T, async () => {
    const c = client(server);
    const messages = [{ role: 'user', content: 'Where are the bicycle parts kept?' }];
    const turn1 = await c.messages.create({ model: MODEL_ID, max_tokens: 24, temperature: 0, system: LONG_SYSTEM, messages });
    assertUsage(turn1.usage, 24);
    messages.push({ role: 'assistant', content: turn1.content });
    messages.push({ role: 'user', content: 'And the winter coats?' });
    const turn2 = await c.messages.create({ model: MODEL_ID, max_tokens: 24, temperature: 0, system: LONG_SYSTEM, messages });
    assertUsage(turn2.usage, 24);
    assert.ok(promptTokens(turn2.usage) > promptTokens(turn1.usage));
    const read = turn2.usage.cache_read_input_tokens;
    assert.ok(read > 0, `turn 2 cache_read_input_tokens ${read}`);
    assert.ok(read >= 64, `turn 2 cache_read_input_tokens ${read} >= 64 (one block)`);
  });

  it('count_tokens equals the prompt tokens that create() reports', T, async () => {
    const c = client(server);
    const params = {
      model: MODEL_ID,
      system: LONG_SYSTEM,
      messages: [{ role: 'user', content: 'How many crates of tea are there?' }],
    };
    const counted = await c.messages.countTokens(params);
    assert.ok(Number.isInteger(counted.input_tokens) && counted.input_tokens > 0);
    const msg = await c.messages.create({ ...params, max_tokens: 8, temperature: 0 });
    const u = msg.usage;
    // kvault: input_tokens = computed and not stored, cache_read = restored from the cache,
    // cache_creation = computed and stored (whole blocks); the three add up to the prompt.
    assert.equal(promptTokens(u), counted.input_tokens,
      `count_tokens ${counted.input_tokens} vs usage ${JSON.stringify(u)}`);
    // Counting again (now that the prompt is cached) gives the same number.
    assert.equal((await c.messages.countTokens(params)).input_tokens, counted.input_tokens);
  });

  it('prefill: a last assistant message is continued, not closed; trailing whitespace is a 400', T, async () => {
    const c = client(server);
    const question = { role: 'user', content: 'Name one colour.' };
    const asked = await c.messages.create({ model: MODEL_ID, max_tokens: 4, temperature: 0, messages: [question] });
    const prefilled = await c.messages.create({
      model: MODEL_ID, max_tokens: 4, temperature: 0, messages: [question, { role: 'assistant', content: 'Sure' }],
    });
    assertUsage(prefilled.usage, 4);
    // The prompt is the question's prompt plus the prefill's own token(s); a closed assistant turn
    // would add an end of turn and a new assistant header as well.
    const added = promptTokens(prefilled.usage) - promptTokens(asked.usage);
    assert.ok(added >= 1 && added <= 2, `prefill added ${added} prompt tokens`);
    const counted = await c.messages.countTokens({ model: MODEL_ID, messages: [question, { role: 'assistant', content: 'Sure' }] });
    assert.equal(counted.input_tokens, promptTokens(prefilled.usage));
    await assert.rejects(
      c.messages.create({ model: MODEL_ID, max_tokens: 4, temperature: 0, messages: [question, { role: 'assistant', content: 'Sure ' }] }),
      (err) => {
        assertAnthropicError(err, Anthropic.BadRequestError, 400, 'invalid_request_error');
        assert.match(err.error.error.message, /trailing whitespace/);
        return true;
      });
  });

  it('stop_sequences taken from the greedy output: stop_reason stop_sequence, text cut before it', T, async (t) => {
    const c = client(server);
    const req = request('List the aisle codes.', { max_tokens: 40 });
    const full = await c.messages.create(req);
    const text = textOf(full);
    const s = pickStopSequence(text);
    if (s === null) {
      t.skip(`greedy output too short for a stop sequence: ${JSON.stringify(text)}`);
      return;
    }
    t.diagnostic(`stop sequence ${JSON.stringify(s)} at ${text.indexOf(s)} of ${JSON.stringify(text)}`);
    const expected = text.slice(0, text.indexOf(s));

    const stopped = await c.messages.create({ ...req, stop_sequences: [s] });
    assert.equal(stopped.stop_reason, 'stop_sequence');
    assert.equal(stopped.stop_sequence, s);
    assert.equal(textOf(stopped), expected);

    const stream = c.messages.stream({ ...req, stop_sequences: [s] });
    const events = await collect(stream);
    const final = await stream.finalMessage();
    const delta = events.find((e) => e.type === 'message_delta');
    assert.equal(delta.delta.stop_reason, 'stop_sequence');
    assert.equal(delta.delta.stop_sequence, s);
    assert.equal(textOf(final), expected, 'streamed text never includes any part of the stop sequence');
  });

  // The forced call is made once and shared by the tool tests (grammar-constrained decoding is slow).
  const TOOL_REQUEST = request('What is the weather in Oslo?', {
    tools: [WEATHER_TOOL], tool_choice: FORCE_WEATHER, max_tokens: 300,
  });
  let forcedCall;
  const forcedToolUse = () => (forcedCall ??= client(server).messages.create(TOOL_REQUEST));

  it('tools: a forced tool_choice returns a tool_use block for get_weather', T, async () => {
    const msg = await forcedToolUse();
    assertMessageShape(msg);
    assert.equal(msg.stop_reason, 'tool_use');
    const use = msg.content.find((b) => b.type === 'tool_use');
    assert.ok(use, `a tool_use block in ${JSON.stringify(msg.content)}`);
    assert.match(use.id, /^toolu_./);
    assert.equal(use.name, 'get_weather');
    assert.equal(typeof use.input, 'object');
    assert.ok(use.input !== null && !Array.isArray(use.input));
    assert.equal(typeof use.input.city, 'string');
    assertUsage(msg.usage, 300);
  });

  it('tools: round trip with a tool_result gets a normal message', T, async () => {
    const c = client(server);
    const messages = [...TOOL_REQUEST.messages];
    const base = { model: MODEL_ID, system: LONG_SYSTEM, tools: [WEATHER_TOOL], temperature: 0 };
    const first = await forcedToolUse();
    assert.equal(first.stop_reason, 'tool_use');
    const use = first.content.find((b) => b.type === 'tool_use');
    messages.push({ role: 'assistant', content: first.content });
    messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 degrees' }] });
    const { data: second, response } = await c.messages.create({ ...base, messages, max_tokens: 24 }).withResponse();
    assert.equal(response.status, 200);
    assertMessageShape(second);
    assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(second.stop_reason), `stop_reason ${second.stop_reason}`);
    assertUsage(second.usage, 24);
    assert.ok(promptTokens(second.usage) > promptTokens(first.usage));
  });

  it('tools: streamed tool_use has input_json_delta parts that parse to the input', T, async () => {
    const plain = await forcedToolUse();
    const plainUse = plain.content.find((b) => b.type === 'tool_use');
    assert.ok(plainUse, 'non-streamed response has a tool_use block');

    const stream = client(server).messages.stream(TOOL_REQUEST);
    const events = await collect(stream);
    const final = await stream.finalMessage();
    assert.match(eventTypes(events), ANY_EVENT_ORDER);

    const start = events.find((e) => e.type === 'content_block_start' && e.content_block.type === 'tool_use');
    assert.ok(start, 'a content_block_start of type tool_use');
    assert.match(start.content_block.id, /^toolu_./);
    assert.equal(start.content_block.name, 'get_weather');
    const parts = events.filter((e) => e.type === 'content_block_delta' && e.index === start.index);
    assert.ok(parts.length >= 1, 'input_json_delta events');
    for (const p of parts) assert.equal(p.delta.type, 'input_json_delta');
    const input = JSON.parse(parts.map((p) => p.delta.partial_json).join(''));
    assert.equal(typeof input.city, 'string');

    const delta = events.find((e) => e.type === 'message_delta');
    assert.equal(delta.delta.stop_reason, 'tool_use');

    const finalUse = final.content.find((b) => b.type === 'tool_use');
    assert.ok(finalUse, 'finalMessage() has the tool_use block');
    assert.equal(finalUse.id, start.content_block.id);
    assert.equal(finalUse.name, 'get_weather');
    assert.deepEqual(finalUse.input, input);
    assert.equal(final.stop_reason, 'tool_use');
    // Greedy: the streamed call is the non-streamed one.
    assert.deepEqual(input, plainUse.input);
  });

  it('tools: a tool call cut off by max_tokens stops with max_tokens, not tool_use', T, async () => {
    const tool = { ...WEATHER_TOOL, input_schema: WEATHER_SCHEMA_UNBOUNDED };
    const msg = await client(server).messages.create(request('What is the weather in Oslo?', {
      tools: [tool], tool_choice: FORCE_WEATHER, max_tokens: 24,
    }));
    assert.equal(msg.usage.output_tokens, 24, 'an unbounded city string is still open after 24 tokens');
    assert.equal(msg.stop_reason, 'max_tokens');
  });

  it('Claude Code\'s billing header line in system does not defeat the cache', T, async () => {
    const c = client(server);
    // A system prompt no other test sends, so the hits can only come from this test's requests.
    const system = (cch) => [
      { type: 'text', text: `x-anthropic-billing-header: cc_version=2.0.14.abc; cc_entrypoint=cli; cch=${cch};` },
      { type: 'text', text: `Billing line check. ${LONG_SYSTEM}` },
    ];
    const messages = [{ role: 'user', content: 'Where is the copper wire?' }];
    const first = await c.messages.create({ model: MODEL_ID, max_tokens: 16, temperature: 0, system: system('AAAA1'), messages });
    const second = await c.messages.create({ model: MODEL_ID, max_tokens: 16, temperature: 0, system: system('BBBB2'), messages });
    assert.ok(second.usage.cache_read_input_tokens > 0,
      `same conversation, other cch: cache_read_input_tokens ${second.usage.cache_read_input_tokens}`);
    assert.ok(second.usage.cache_read_input_tokens >= 64);
    assert.equal(textOf(second), textOf(first), 'the billing line does not change the output');

    const extended = [
      ...messages,
      { role: 'assistant', content: first.content },
      { role: 'user', content: 'And the paper?' },
    ];
    const third = await c.messages.create({ model: MODEL_ID, max_tokens: 16, temperature: 0, system: system('CCCC3'), messages: extended });
    assert.ok(third.usage.cache_read_input_tokens >= 64,
      `extended conversation, other cch: cache_read_input_tokens ${third.usage.cache_read_input_tokens}`);
  });

  it('errors: max_tokens -1, and a streamed max_tokens 0, are BadRequestErrors in Anthropic\'s envelope', T, async () => {
    const c = client(server);
    for (const extra of [{ max_tokens: -1 }, { max_tokens: 0, stream: true }]) {
      await assert.rejects(c.messages.create(request('Hi', extra)),
        (err) => assertAnthropicError(err, Anthropic.BadRequestError, 400, 'invalid_request_error'));
    }
  });

  it('cache warm-up: max_tokens 0 generates nothing and the next request reads its prompt from the cache', T, async () => {
    const c = client(server);
    const body = { model: MODEL_ID, temperature: 0, cache_control: { type: 'ephemeral' },
      system: 'Warm this up first. ' + LONG_SYSTEM, messages: [{ role: 'user', content: 'Which shelf?' }] };
    const warm = await c.messages.create({ ...body, max_tokens: 0 });
    assert.deepEqual(warm.content, []);
    assert.equal(warm.stop_reason, 'max_tokens');
    assert.equal(warm.usage.output_tokens, 0);
    // At most the chat template's header, shared with this tenant's earlier requests.
    assert.ok(warm.usage.cache_read_input_tokens < 64, `warm-up read ${warm.usage.cache_read_input_tokens}`);
    assert.ok(warm.usage.cache_creation_input_tokens >= 64, `warm-up kept ${warm.usage.cache_creation_input_tokens}`);
    const real = await c.messages.create({ ...body, max_tokens: 8 });
    // Everything but the prompt's last token (recomputed for the first token's logits).
    assert.equal(real.usage.cache_read_input_tokens, promptTokens(real.usage) - 1);
    assert.ok(real.usage.output_tokens > 0);
  });

  it('errors: an image block is a BadRequestError that mentions images', T, async () => {
    await assert.rejects(
      client(server).messages.create(request('', {
        messages: [{
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1X1 } },
            { type: 'text', text: 'What is in this picture?' },
          ],
        }],
      })),
      (err) => {
        assertAnthropicError(err, Anthropic.BadRequestError, 400, 'invalid_request_error');
        assert.match(err.error.error.message, /image/i);
        return true;
      });
  });

  it('auth: a wrong API key is an AuthenticationError (401) in Anthropic\'s envelope', { ...T, skip: AUTH_SKIP },
    async () => {
      await assert.rejects(client(server, 'not-a-key').messages.create(request('Hi', { max_tokens: 8 })),
        (err) => assertAnthropicError(err, Anthropic.AuthenticationError, 401, 'authentication_error'));
      await assert.rejects(xApiKeyClient(server, 'not-a-key').messages.create(request('Hi', { max_tokens: 8 })),
        (err) => assertAnthropicError(err, Anthropic.AuthenticationError, 401, 'authentication_error'));
      await assert.rejects(client(server, 'not-a-key').messages.countTokens({ model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }] }),
        Anthropic.AuthenticationError);
    });

  it('auth: a missing key is 401; the x-api-key header works', { ...T, skip: AUTH_SKIP }, async () => {
    const res = await fetch(`${server.anthropicBaseURL}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(request('Hi', { max_tokens: 4 })),
    });
    assert.equal(res.status, 401);
    const body = await res.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error?.type, 'authentication_error');
    assert.equal(typeof body.error?.message, 'string');

    const msg = await xApiKeyClient(server, KEY_B).messages.create(request('Hi', { max_tokens: 4 }));
    assertMessageShape(msg);
  });

  it('tenants: key B (x-api-key) never reads the cache that key A (Bearer) built', { ...T, skip: AUTH_SKIP },
    async () => {
      const req = request('Where is the copper wire?', { max_tokens: 8, system: `Tenant isolation check. ${LONG_SYSTEM}` });
      const a1 = await client(server, KEY_A).messages.create(req);
      const a2 = await client(server, KEY_A).messages.create(req);
      assert.ok(a2.usage.cache_read_input_tokens >= 64, 'key A reads its own cache');
      const b1 = await xApiKeyClient(server, KEY_B).messages.create(req);
      assert.equal(b1.usage.cache_read_input_tokens, 0, 'key B\'s first request: nothing read from the cache');
      assert.equal(promptTokens(b1.usage), promptTokens(a1.usage));
      assert.equal(textOf(b1), textOf(a1), 'same output for both tenants');
      const b2 = await xApiKeyClient(server, KEY_B).messages.create(req);
      assert.ok(b2.usage.cache_read_input_tokens >= 64, 'key B reads its own cache');
    });
});

describe('Anthropic SDK against kvault: queue full (--parallel 1 --max-queue 0)', () => {
  const server = useServer({ name: 'anthropic-429', extraArgs: ['--parallel', '1', '--max-queue', '0'] });

  it('a second concurrent request is a RateLimitError (429) while the first runs', T, async () => {
    const c = client(server);
    const long = await c.messages.create(request('Tell me everything.', { max_tokens: 2000, stream: true }));
    const events = long[Symbol.asyncIterator]();
    try {
      const first = await events.next();
      assert.equal(first.done, false, 'the long request is streaming');
      await assert.rejects(c.messages.create(request('Hi', { max_tokens: 8 })),
        (err) => assertAnthropicError(err, Anthropic.RateLimitError, 429, 'rate_limit_error'));
      const stillRunning = await events.next();
      assert.equal(stillRunning.done, false, 'the long request was still running when the 429 came');
    } finally {
      long.controller.abort();
    }
    // Aborting the stream cancels the long request and frees the slot.
    const after = await eventually(() => c.messages.create(request('Hi', { max_tokens: 4 })));
    assertMessageShape(after);
  });
});
