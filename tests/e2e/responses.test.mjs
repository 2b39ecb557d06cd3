// The official `openai` SDK's Responses API (`client.responses.*`) against the real server: plain
// and streamed answers (the event sequence checked), a forced function call and its output sent
// back, text.format json_schema, stored responses continued with previous_response_id — after a
// server restart too, the KV then coming back from disk — GET and DELETE, tenants kept apart.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { describe, it } from 'node:test';

import OpenAI from 'openai';

import { WEATHER_SCHEMA } from './common.mjs';
import { KEY_A, KEY_B, MODEL_ID, NO_AUTH, startServer, useServer } from './server.mjs';

const T = { timeout: 120_000 };
const AUTH_SKIP = NO_AUTH ? 'KVAULT_E2E_NO_AUTH=1: server started without --api-key' : false;
const WEATHER = { type: 'function', name: 'get_weather', description: 'Get the weather for a city', parameters: WEATHER_SCHEMA, strict: false };
const LONG = 'You answer questions about the harbour warehouse: aisles, shelves and crates. '.repeat(40);

function client(server, apiKey = KEY_A) {
  return new OpenAI({ apiKey, baseURL: server.openaiBaseURL, maxRetries: 0, timeout: 60_000 });
}

describe('Responses API with the OpenAI SDK', () => {
  const server = useServer({ name: 'responses' });

  it('answers a string input; output_text and usage as the reference has them', T, async () => {
    const r = await client(server).responses.create({ model: MODEL_ID, input: 'hi', max_output_tokens: 8, temperature: 0 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].role, 'assistant');
    assert.equal(r.output[0].content[0].type, 'output_text');
    assert.equal(r.output_text, r.output[0].content[0].text);
    assert.equal(r.status, 'incomplete', 'the tiny model writes until max_output_tokens');
    assert.equal(r.incomplete_details.reason, 'max_output_tokens');
    assert.equal(r.usage.output_tokens, 8);
    assert.ok(r.usage.input_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
  });

  it('streams the reference\'s event sequence, numbered, and the SDK assembles the same text', T, async () => {
    const c = client(server);
    const body = { model: MODEL_ID, instructions: LONG, input: 'Where is the tea?', max_output_tokens: 12, temperature: 0 };
    const plain = await c.responses.create(body);
    const events = [];
    const stream = c.responses.stream(body);
    for await (const ev of stream) events.push(ev);
    const final = await stream.finalResponse();
    assert.equal(final.output_text, plain.output_text, 'streamed and plain greedy answers agree');
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    assert.ok(deltas >= 1);
    assert.deepEqual(types, [
      'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      ...Array(deltas).fill('response.output_text.delta'),
      'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete',
    ]);
    assert.deepEqual(events.map((e) => e.sequence_number), events.map((_, i) => i));
    const last = events.at(-1).response;
    assert.ok(last.usage.input_tokens_details.cached_tokens > 0, 'the same instructions came from the cache');
  });

  it('a forced function call, its output sent back as the next turn', T, async () => {
    const c = client(server);
    const r = await c.responses.create({
      model: MODEL_ID, input: 'Weather in Paris?', tools: [WEATHER], tool_choice: { type: 'function', name: 'get_weather' },
      parallel_tool_calls: false, max_output_tokens: 64, temperature: 0,
    });
    const call = r.output.find((o) => o.type === 'function_call');
    assert.ok(call, JSON.stringify(r.output));
    assert.equal(call.name, 'get_weather');
    assert.match(call.call_id, /^call_/);
    assert.equal(typeof JSON.parse(call.arguments).city, 'string');
    const next = await c.responses.create({
      model: MODEL_ID, previous_response_id: r.id, tools: [WEATHER], max_output_tokens: 4, temperature: 0,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp_c": 21}' }],
    });
    assert.equal(next.previous_response_id, r.id);
    assert.ok(next.usage.input_tokens > r.usage.input_tokens, 'the call and its output are in the prompt');
    assert.ok(next.usage.input_tokens_details.cached_tokens > 0);
  });

  it('text.format json_schema constrains the answer', T, async () => {
    const schema = { type: 'object', properties: { aisle: { type: 'string', enum: ['BRIX', 'QUAY'] } }, required: ['aisle'], additionalProperties: false };
    const r = await client(server).responses.create({
      model: MODEL_ID, input: 'Which aisle?', max_output_tokens: 40, temperature: 0,
      text: { format: { type: 'json_schema', name: 'aisle', schema, strict: true } },
    });
    assert.ok(['BRIX', 'QUAY'].includes(JSON.parse(r.output_text).aisle), r.output_text);
  });

  it('GET and DELETE a stored response; another tenant gets 404; store:false keeps nothing', T, async () => {
    const c = client(server);
    const r = await c.responses.create({ model: MODEL_ID, input: 'keep me', max_output_tokens: 4, temperature: 0 });
    const got = await c.responses.retrieve(r.id);
    assert.equal(got.id, r.id);
    assert.equal(got.output_text, r.output_text);
    if (!AUTH_SKIP) {
      await assert.rejects(client(server, KEY_B).responses.retrieve(r.id), (e) => e.status === 404);
      await assert.rejects(
        client(server, KEY_B).responses.create({ model: MODEL_ID, previous_response_id: r.id, input: 'x', max_output_tokens: 2 }),
        (e) => e.status === 404);
    }
    await c.responses.delete(r.id);
    await assert.rejects(c.responses.retrieve(r.id), (e) => e.status === 404);
    const unstored = await c.responses.create({ model: MODEL_ID, input: 'forget me', store: false, max_output_tokens: 2 });
    await assert.rejects(c.responses.retrieve(unstored.id), (e) => e.status === 404);
  });

  it('refuses what it cannot honour, naming the field', T, async () => {
    const c = client(server);
    const bad = async (extra, needle) => assert.rejects(
      c.responses.create({ model: MODEL_ID, input: 'x', max_output_tokens: 2, ...extra }),
      (e) => e.status === 400 && e.message.includes(needle));
    await bad({ tools: [{ type: 'web_search' }] }, 'tools[0].type');
    await bad({ background: true }, 'background');
    await bad({ frobnicate: 1 }, 'frobnicate');
    await bad({ include: ['file_search_call.results'] }, 'include');
    await bad({ prompt_cache_options: { comparison_response_id: 'resp_x' } }, 'prompt_cache_options.comparison_response_id');
    await bad({ reasoning: { effort: 'extreme' } }, 'reasoning.effort');
    await bad({ reasoning: { summary: 'brief' } }, 'reasoning.summary');
  });

  it('prompt_cache_options.prewarm: no output, and the request after it reads the prompt from the cache', T, async () => {
    const c = client(server);
    const body = { model: MODEL_ID, instructions: 'Warm this first. ' + LONG, input: 'Which aisle?', temperature: 0, store: false };
    for (const stream of [false, true]) {
      const warm = stream
        ? await c.responses.stream({ ...body, instructions: 'Streamed. ' + body.instructions,
          prompt_cache_options: { prewarm: true, mode: 'implicit' } }).finalResponse()
        : await c.responses.create({ ...body, prompt_cache_options: { prewarm: true, mode: 'implicit' } });
      assert.equal(warm.status, 'completed');
      assert.deepEqual(warm.output, []);
      assert.equal(warm.usage.output_tokens, 0);
      // At most the chat template's header, shared with this tenant's earlier requests.
      assert.ok(warm.usage.input_tokens_details.cached_tokens < 64, `warm-up read ${warm.usage.input_tokens_details.cached_tokens}`);
    }
    const real = await c.responses.create({ ...body, max_output_tokens: 4 });
    assert.ok(real.usage.input_tokens_details.cached_tokens >= real.usage.input_tokens - 64,
      `cached ${real.usage.input_tokens_details.cached_tokens} of ${real.usage.input_tokens}`);
    assert.equal(real.usage.output_tokens, 4);
  });
});

describe('Responses API: previous_response_id after a restart', () => {
  it('continues the stored conversation with its KV restored from disk', T, async () => {
    let server = await startServer({ name: 'responses-restart' });
    const dataDir = server.dataDir;
    let first;
    try {
      first = await client(server).responses.create({
        model: MODEL_ID, instructions: LONG, input: 'Where is the tea?', max_output_tokens: 8, temperature: 0,
      });
    } finally {
      const { code } = await server.stop();
      assert.equal(code, 0);
    }
    server = await startServer({ name: 'responses-restart', dataDir });
    try {
      const next = await client(server).responses.create({
        model: MODEL_ID, instructions: LONG, previous_response_id: first.id, input: 'And the rope?', max_output_tokens: 4, temperature: 0,
      });
      assert.equal(next.previous_response_id, first.id);
      const cached = next.usage.input_tokens_details.cached_tokens;
      assert.ok(cached >= first.usage.input_tokens - 1, `${cached} cached of ${next.usage.input_tokens} (first turn: ${first.usage.input_tokens})`);
      const log = fs.readFileSync(server.logFile, 'utf8').split('\n').filter((l) => l.includes('api=openai.responses')).at(-1);
      assert.match(log, /disk [1-9]\d* remote 0\)/, log);
      assert.match(log, new RegExp(`agent=${first.id} `), 'the chain runs as one agent');
    } finally {
      const { code } = await server.stop();
      assert.equal(code, 0);
    }
  });
});
