// The real kvault server driven by the official `openai` npm SDK (v6).
// The model has random weights: text is gibberish, but greedy decoding is deterministic, so the
// tests check shapes, determinism, usage numbers, finish reasons and error classes, never meaning.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import OpenAI from 'openai';

import {
  LONG_SYSTEM, WEATHER_SCHEMA, WEATHER_SCHEMA_UNBOUNDED, WEATHER_TOOL_DESCRIPTION, collect, eventually,
  pickStopSequence,
} from './common.mjs';
import { KEY_A, KEY_B, MODEL_ID, NO_AUTH, useServer } from './server.mjs';

const T = { timeout: 60_000 };
const AUTH_SKIP = NO_AUTH ? 'KVAULT_E2E_NO_AUTH=1: server started without --api-key' : false;

const WEATHER_TOOL = {
  type: 'function',
  function: { name: 'get_weather', description: WEATHER_TOOL_DESCRIPTION, parameters: WEATHER_SCHEMA },
};
const FORCE_WEATHER = { type: 'function', function: { name: 'get_weather' } };
// Sent with every forced call: one call only (a random-weights model allowed parallel calls could keep
// starting new ones until max_tokens).
const ONE_CALL = { parallel_tool_calls: false };

function client(server, apiKey = KEY_A, opts = {}) {
  return new OpenAI({ apiKey, baseURL: server.openaiBaseURL, maxRetries: 0, timeout: 60_000, ...opts });
}

// Greedy (temperature 0, as the tests compare outputs; the server's default is 1, as OpenAI's).
function chatRequest(userText, extra = {}) {
  return {
    model: MODEL_ID,
    messages: [
      { role: 'system', content: LONG_SYSTEM },
      { role: 'user', content: userText },
    ],
    max_tokens: 24,
    temperature: 0,
    ...extra,
  };
}

function assertUsage(usage, maxTokens) {
  assert.ok(usage, 'usage present');
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, `prompt_tokens ${usage.prompt_tokens}`);
  assert.ok(Number.isInteger(usage.completion_tokens) && usage.completion_tokens > 0,
    `completion_tokens ${usage.completion_tokens}`);
  assert.ok(usage.completion_tokens <= maxTokens, `completion_tokens ${usage.completion_tokens} <= ${maxTokens}`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.equal(typeof usage.prompt_tokens_details?.cached_tokens, 'number');
  assert.ok(usage.prompt_tokens_details.cached_tokens >= 0);
  assert.ok(usage.prompt_tokens_details.cached_tokens <= usage.prompt_tokens);
}

/** Concatenates a chat stream: text, tool calls by index, finish reasons, usage. */
async function readChatStream(stream) {
  const chunks = await collect(stream);
  let content = '';
  const toolCalls = [];
  const finishReasons = [];
  for (const chunk of chunks) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.content) content += choice.delta.content;
      for (const tc of choice.delta?.tool_calls ?? []) {
        const slot = (toolCalls[tc.index] ??= { id: '', type: undefined, name: '', arguments: '' });
        if (tc.id) slot.id += tc.id;
        if (tc.type) slot.type = tc.type;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.arguments += tc.function.arguments;
      }
      if (choice.finish_reason) finishReasons.push(choice.finish_reason);
    }
  }
  return { chunks, content, toolCalls, finishReasons, usage: chunks.at(-1)?.usage };
}

describe('OpenAI SDK against kvault', () => {
  const server = useServer({ name: 'openai' });

  it('models.list() reports the served model id', T, async () => {
    const ids = [];
    for await (const m of client(server).models.list()) ids.push(m.id);
    assert.ok(ids.includes(MODEL_ID), `models: ${JSON.stringify(ids)}`);
  });

  it('chat.completions.create: response shape and usage', T, async () => {
    const res = await client(server).chat.completions.create(chatRequest('Where is the tea?', { max_tokens: 16 }));
    assert.equal(res.object, 'chat.completion');
    assert.equal(typeof res.id, 'string');
    assert.ok(res.id.length > 0);
    assert.equal(res.model, MODEL_ID);
    assert.equal(res.choices.length, 1);
    const [choice] = res.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, 'assistant');
    assert.equal(typeof choice.message.content, 'string');
    assert.ok(['stop', 'length'].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
    assertUsage(res.usage, 16);
  });

  it('greedy decoding is deterministic: the same request twice gives the same content', T, async () => {
    const c = client(server);
    const req = chatRequest('Name three crates.', { max_tokens: 24 });
    // Compared in the same cache state (both resumed from the pool): a cold run and a resumed
    // run can round differently (docs/architecture.md, "Exactness").
    await c.chat.completions.create(req);
    const a = await c.chat.completions.create(req);
    const b = await c.chat.completions.create(req);
    assert.equal(b.choices[0].message.content, a.choices[0].message.content);
    assert.equal(b.choices[0].finish_reason, a.choices[0].finish_reason);
    assert.equal(b.usage.completion_tokens, a.usage.completion_tokens);
    assert.equal(b.usage.prompt_tokens, a.usage.prompt_tokens);
  });

  it('streaming with include_usage: chunks concatenate to the non-streamed content', T, async () => {
    const c = client(server);
    const req = chatRequest('Which shelf holds the rope?', { max_tokens: 32 });
    await c.chat.completions.create(req);  // both compared requests then resume the same cached prompt
    const plain = await c.chat.completions.create(req);
    const stream = await c.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    const s = await readChatStream(stream);
    assert.ok(s.chunks.length >= 2, `chunks: ${s.chunks.length}`);
    assert.equal(s.content, plain.choices[0].message.content);
    assert.equal(s.finishReasons.length, 1, `finish_reason in exactly one chunk: ${JSON.stringify(s.finishReasons)}`);
    assert.equal(s.finishReasons[0], plain.choices[0].finish_reason);
    assert.equal(s.chunks[0].choices[0]?.delta?.role, 'assistant', 'first chunk carries delta.role');
    // The last chunk carries the usage (and no choices); the others have none.
    const last = s.chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assertUsage(last.usage, 32);
    assert.equal(last.usage.prompt_tokens, plain.usage.prompt_tokens);
    assert.equal(last.usage.completion_tokens, plain.usage.completion_tokens);
    for (const chunk of s.chunks.slice(0, -1)) assert.equal(chunk.usage ?? null, null);
    assert.ok(s.chunks.every((ch) => ch.id === s.chunks[0].id), 'one id for all chunks');
  });

  it('multi-turn: the second turn reuses the first turn\'s KV (cached_tokens >= 64)', T, async () => {
    const c = client(server);
    const messages = [
      { role: 'system', content: LONG_SYSTEM },
      { role: 'user', content: 'Where are the bicycle parts kept?' },
    ];
    const turn1 = await c.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 24, temperature: 0 });
    assertUsage(turn1.usage, 24);
    messages.push({ role: 'assistant', content: turn1.choices[0].message.content });
    messages.push({ role: 'user', content: 'And the winter coats?' });
    const turn2 = await c.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 24, temperature: 0 });
    assertUsage(turn2.usage, 24);
    const cached = turn2.usage.prompt_tokens_details.cached_tokens;
    assert.ok(turn2.usage.prompt_tokens > turn1.usage.prompt_tokens);
    assert.ok(cached > 0, `turn 2 cached_tokens ${cached}`);
    assert.ok(cached >= 64, `turn 2 cached_tokens ${cached} >= 64 (one block)`);
  });

  it('stop sequence taken from the greedy output ends the text before it', T, async (t) => {
    const c = client(server);
    const req = chatRequest('List the aisle codes.', { max_tokens: 40 });
    const full = await c.chat.completions.create(req);
    const text = full.choices[0].message.content;
    const s = pickStopSequence(text);
    if (s === null) {
      t.skip(`greedy output too short for a stop sequence: ${JSON.stringify(text)}`);
      return;
    }
    t.diagnostic(`stop sequence ${JSON.stringify(s)} at ${text.indexOf(s)} of ${JSON.stringify(text)}`);
    const expected = text.slice(0, text.indexOf(s));

    const stopped = await c.chat.completions.create({ ...req, stop: [s] });
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.equal(stopped.choices[0].message.content, expected);
    assert.ok(stopped.usage.completion_tokens <= full.usage.completion_tokens);

    const stream = await c.chat.completions.create({ ...req, stop: [s], stream: true });
    const st = await readChatStream(stream);
    assert.deepEqual(st.finishReasons, ['stop']);
    assert.equal(st.content, expected, 'streamed text never includes any part of the stop sequence');
  });

  // The forced call is made once and shared by the tool tests (grammar-constrained decoding is slow).
  const TOOL_REQUEST = chatRequest('What is the weather in Oslo?', {
    tools: [WEATHER_TOOL], tool_choice: FORCE_WEATHER, ...ONE_CALL, max_tokens: 300,
  });
  let forcedCall;
  const forcedToolCall = () => (forcedCall ??= client(server).chat.completions.create(TOOL_REQUEST));

  it('tools: a forced tool_choice returns a get_weather call with JSON arguments', T, async () => {
    const res = await forcedToolCall();
    const [choice] = res.choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.role, 'assistant');
    assert.ok(Array.isArray(choice.message.tool_calls) && choice.message.tool_calls.length >= 1);
    const call = choice.message.tool_calls[0];
    assert.equal(call.type, 'function');
    assert.equal(typeof call.id, 'string');
    assert.ok(call.id.length > 0);
    assert.equal(call.function.name, 'get_weather');
    const args = JSON.parse(call.function.arguments);
    assert.equal(typeof args, 'object');
    assert.ok(args !== null && !Array.isArray(args));
    assert.equal(typeof args.city, 'string');
    assertUsage(res.usage, 300);
  });

  it('tools: round trip with a tool result message gets a normal answer', T, async () => {
    const c = client(server);
    const messages = [...TOOL_REQUEST.messages];
    const first = await forcedToolCall();
    assert.equal(first.choices[0].finish_reason, 'tool_calls');
    const assistant = first.choices[0].message;
    const call = assistant.tool_calls[0];
    messages.push(assistant);  // sent back as the SDK returned it, as agent loops do
    messages.push({ role: 'tool', tool_call_id: call.id, content: '{"temp_c": 21}' });
    const { data: second, response } = await c.chat.completions
      .create({ model: MODEL_ID, messages, tools: [WEATHER_TOOL], max_tokens: 24, temperature: 0 })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(second.object, 'chat.completion');
    assert.equal(second.choices[0].message.role, 'assistant');
    assert.ok(['stop', 'length', 'tool_calls'].includes(second.choices[0].finish_reason));
    assertUsage(second.usage, 24);
    assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens);
  });

  it('tools: streamed tool call accumulates to the same name and parseable arguments', T, async () => {
    const plain = await forcedToolCall();
    const s = await readChatStream(await client(server).chat.completions.create({ ...TOOL_REQUEST, stream: true }));
    assert.deepEqual(s.finishReasons, ['tool_calls']);
    assert.ok(s.toolCalls.length >= 1, 'at least one streamed tool call');
    const call = s.toolCalls[0];
    assert.equal(call.name, 'get_weather');
    assert.ok(call.id.length > 0, 'streamed tool call has an id');
    if (call.type !== undefined) assert.equal(call.type, 'function');
    const args = JSON.parse(call.arguments);
    assert.equal(typeof args.city, 'string');
    // Greedy: the streamed call is the non-streamed one.
    assert.equal(call.name, plain.choices[0].message.tool_calls[0].function.name);
    assert.deepEqual(args, JSON.parse(plain.choices[0].message.tool_calls[0].function.arguments));
  });

  it('tools: a tool call cut off by max_tokens finishes with "length", not "tool_calls"', T, async () => {
    const tool = { ...WEATHER_TOOL, function: { ...WEATHER_TOOL.function, parameters: WEATHER_SCHEMA_UNBOUNDED } };
    const res = await client(server).chat.completions.create(chatRequest('What is the weather in Oslo?', {
      tools: [tool], tool_choice: FORCE_WEATHER, ...ONE_CALL, max_tokens: 24,
    }));
    // By then the greedy output is a started call ('{"city":"...' or less) that the server's parser
    // may already report in tool_calls; finish_reason must still say the output was cut off.
    assert.equal(res.usage.completion_tokens, 24, 'an unbounded city string is still open after 24 tokens');
    assert.equal(res.choices[0].finish_reason, 'length');
  });

  it('completions.create (legacy /v1/completions)', T, async () => {
    const res = await client(server).completions.create({ model: MODEL_ID, prompt: 'Hello', max_tokens: 8, temperature: 0 });
    assert.equal(res.object, 'text_completion');
    assert.equal(res.choices.length, 1);
    assert.equal(typeof res.choices[0].text, 'string');
    assert.ok(['stop', 'length'].includes(res.choices[0].finish_reason), `finish_reason ${res.choices[0].finish_reason}`);
    assert.ok(res.usage, 'usage present');
    assert.ok(res.usage.prompt_tokens > 0);
    assert.ok(res.usage.completion_tokens > 0 && res.usage.completion_tokens <= 8);
  });

  it('completions.create stream: the same text as the whole answer, then usage', T, async () => {
    const c = client(server);
    const req = { model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 };
    const plain = await c.completions.create(req);
    const chunks = await collect(await c.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
    assert.ok(chunks.length >= 3, `chunks: ${chunks.length}`);
    let text = '';
    const finishReasons = [];
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'text_completion');
      for (const choice of chunk.choices) {
        text += choice.text;
        if (choice.finish_reason) finishReasons.push(choice.finish_reason);
      }
    }
    assert.equal(text, plain.choices[0].text);
    assert.deepEqual(finishReasons, [plain.choices[0].finish_reason]);
    const last = chunks.at(-1);
    assert.equal(last.choices.length, 0, 'the usage chunk has no choices');
    assert.equal(last.usage.completion_tokens, plain.usage.completion_tokens);
    assert.ok(chunks.slice(0, -1).every((ch) => ch.usage === null), 'the other chunks carry usage: null');
  });

  it('x-request-id: present on responses, and the client\'s X-Request-Id is echoed', T, async () => {
    const c = client(server);
    const { response } = await c.chat.completions.create(chatRequest('Hi', { max_tokens: 8 })).withResponse();
    const id = response.headers.get('x-request-id');
    assert.ok(id && id.length > 0, 'x-request-id header present');

    const echoed = await c.chat.completions
      .create(chatRequest('Hi', { max_tokens: 8 }), { headers: { 'X-Request-Id': 'abc' } })
      .withResponse();
    assert.equal(echoed.response.headers.get('x-request-id'), 'abc');
  });

  it('errors: max_tokens 0 is a BadRequestError in OpenAI\'s envelope', T, async () => {
    await assert.rejects(
      client(server).chat.completions.create(chatRequest('Hi', { max_tokens: 0 })),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 400);
        assert.equal(err.error?.type, 'invalid_request_error');
        assert.equal(typeof err.error?.message, 'string');
        return true;
      });
  });

  it('errors: empty messages is a BadRequestError', T, async () => {
    await assert.rejects(
      client(server).chat.completions.create({ model: MODEL_ID, messages: [], max_tokens: 8 }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 400);
        return true;
      });
  });

  it('auth: a wrong API key is an AuthenticationError (401)', { ...T, skip: AUTH_SKIP }, async () => {
    await assert.rejects(
      client(server, 'not-a-key').chat.completions.create(chatRequest('Hi', { max_tokens: 8 })),
      (err) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 401);
        assert.equal(typeof err.error?.message, 'string');
        return true;
      });
    await assert.rejects(client(server, 'not-a-key').models.list(), OpenAI.AuthenticationError);
  });

  it('auth: a missing key is 401 in OpenAI\'s envelope; x-api-key and Bearer both work', { ...T, skip: AUTH_SKIP },
    async () => {
      const body = JSON.stringify(chatRequest('Hi', { max_tokens: 4 }));
      const url = `${server.openaiBaseURL}/chat/completions`;
      const json = { 'content-type': 'application/json' };

      const missing = await fetch(url, { method: 'POST', headers: json, body });
      assert.equal(missing.status, 401);
      const envelope = await missing.json();
      assert.equal(typeof envelope.error?.message, 'string');
      assert.equal(typeof envelope.error?.type, 'string');

      const viaHeader = await fetch(url, { method: 'POST', headers: { ...json, 'x-api-key': KEY_B }, body });
      assert.equal(viaHeader.status, 200, await viaHeader.clone().text());
      assert.equal((await viaHeader.json()).object, 'chat.completion');

      const viaBearer = await fetch(url, { method: 'POST', headers: { ...json, authorization: `Bearer ${KEY_B}` }, body });
      assert.equal(viaBearer.status, 200, await viaBearer.clone().text());
      await viaBearer.arrayBuffer();

      // GET /health stays open (the harness polls it without a key).
      assert.equal((await fetch(`${server.origin}/health`)).status, 200);
    });

  it('tenants: key B never reuses the KV cache that key A built', { ...T, skip: AUTH_SKIP }, async () => {
    // A system prompt no other test sends, so only this test's requests can have cached it.
    const req = {
      model: MODEL_ID,
      messages: [
        { role: 'system', content: `Tenant isolation check. ${LONG_SYSTEM}` },
        { role: 'user', content: 'Where is the copper wire?' },
      ],
      max_tokens: 8,
      temperature: 0,
    };
    const a1 = await client(server, KEY_A).chat.completions.create(req);
    const a2 = await client(server, KEY_A).chat.completions.create(req);
    assert.ok(a2.usage.prompt_tokens_details.cached_tokens >= 64, 'key A reuses its own cache');
    const b1 = await client(server, KEY_B).chat.completions.create(req);
    assert.equal(b1.usage.prompt_tokens_details.cached_tokens, 0, 'key B\'s first request: nothing cached');
    assert.equal(b1.choices[0].message.content, a1.choices[0].message.content, 'same output for both tenants');
    const b2 = await client(server, KEY_B).chat.completions.create(req);
    assert.ok(b2.usage.prompt_tokens_details.cached_tokens >= 64, 'key B reuses its own cache');
  });
});

describe('OpenAI SDK against kvault: queue full (--parallel 1 --max-queue 0)', () => {
  const server = useServer({ name: 'openai-429', extraArgs: ['--parallel', '1', '--max-queue', '0'] });

  it('a second concurrent request is a RateLimitError (429) while the first runs', T, async () => {
    const c = client(server);
    const long = await c.chat.completions.create(chatRequest('Tell me everything.', { max_tokens: 2000, stream: true }));
    const events = long[Symbol.asyncIterator]();
    try {
      const first = await events.next();
      assert.equal(first.done, false, 'the long request is streaming');
      await assert.rejects(
        c.chat.completions.create(chatRequest('Hi', { max_tokens: 8 })),
        (err) => {
          assert.ok(err instanceof OpenAI.RateLimitError, `got ${err?.constructor?.name}: ${err?.message}`);
          assert.equal(err.status, 429);
          return true;
        });
      const stillRunning = await events.next();
      assert.equal(stillRunning.done, false, 'the long request was still running when the 429 came');
    } finally {
      long.controller.abort();
    }
    // Aborting the stream cancels the long request and frees the slot.
    const after = await eventually(() => c.chat.completions.create(chatRequest('Hi', { max_tokens: 4 })));
    assert.equal(after.object, 'chat.completion');
  });
});
