// Issue #22 on the OpenAI side, with the official `openai` SDK against the real server: every
// request field kvault honours changes the answer as the reference says (each assertion here fails
// if the field were ignored), the others are refused by name; OpenAI's defaults (temperature 1,
// max_tokens until the context ends); system_fingerprint.
//
// Token ids are the Llama 3 tokenizer's (the tiny demo model's): 279 " the", 9581 " sea",
// 12366 " Paris"; 128001, 128008, 128009 end a turn.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import OpenAI from 'openai';

import { collect, pickStopSequence } from './common.mjs';
import { KEY_A, MODEL_ID, useServer } from './server.mjs';

const T = { timeout: 60_000 };
const THE = 279;
const SEA = 9581;
const PARIS = 12366;
const END_OF_TURN = { 128001: -100, 128008: -100, 128009: -100 };

function client(server) {
  return new OpenAI({ apiKey: KEY_A, baseURL: server.openaiBaseURL, maxRetries: 0, timeout: 60_000 });
}

function ask(text, extra = {}) {
  return { model: MODEL_ID, messages: [{ role: 'user', content: text }], max_tokens: 8, temperature: 0, ...extra };
}

/** The tokens of a chat answer's logprobs (streamed: every chunk's, in order). */
function tokensOf(logprobs) {
  return (logprobs?.content ?? []).map((t) => t.token);
}

async function rejectsNaming(promise, field) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err?.message}`);
    assert.ok(err.message.includes(field), `the message names ${field}: ${err.message}`);
    return true;
  });
}

describe('OpenAI request fields against kvault', () => {
  const server = useServer({ name: 'openai-fields' });

  it('logit_bias: +100 makes greedy write that token every time; -100 takes it away', T, async () => {
    const c = client(server);
    const forced = await c.chat.completions.create(ask('Tell me about the sea.', { logit_bias: { [THE]: 100 } }));
    assert.equal(forced.choices[0].message.content, ' the'.repeat(8));
    // " the" leads " Paris" by 10: the greedy token is " the" ...
    const both = await c.chat.completions.create(ask('Tell me about the sea.', { logit_bias: { [THE]: 100, [PARIS]: 90 } }));
    assert.equal(both.choices[0].message.content, ' the'.repeat(8));
    // ... and -100 on it leaves " Paris".
    const banned = await c.chat.completions.create(ask('Tell me about the sea.', { logit_bias: { [THE]: -100, [PARIS]: 90 } }));
    assert.equal(banned.choices[0].message.content, ' Paris'.repeat(8));
    await rejectsNaming(c.chat.completions.create(ask('x', { logit_bias: { 5: 101 } })), 'logit_bias');
    await rejectsNaming(c.chat.completions.create(ask('x', { logit_bias: { 999999999: 1 } })), 'logit_bias');
  });

  it('frequency_penalty and presence_penalty break a repetition that greedy keeps', T, async () => {
    const c = client(server);
    // " the" leads " sea" by 4: without penalties greedy repeats " the".
    const lead4 = { logit_bias: { [THE]: 100, [SEA]: 96 } };
    const plain = await c.chat.completions.create(ask('Tell me about the sea.', lead4));
    assert.equal(plain.choices[0].message.content, ' the'.repeat(8));
    // 2 per use of " the": by its third use " sea" is ahead.
    const freq = await c.chat.completions.create(ask('Tell me about the sea.', { ...lead4, frequency_penalty: 2 }));
    assert.notEqual(freq.choices[0].message.content, plain.choices[0].message.content);
    assert.ok(freq.choices[0].message.content.includes(' sea'), freq.choices[0].message.content);
    // A lead of 1: presence_penalty 2 puts " sea" ahead as soon as " the" was used once.
    const lead1 = { logit_bias: { [THE]: 100, [SEA]: 99 } };
    assert.equal((await c.chat.completions.create(ask('Tell me about the sea.', lead1))).choices[0].message.content,
      ' the'.repeat(8));
    const presence = await c.chat.completions.create(ask('Tell me about the sea.', { ...lead1, presence_penalty: 2 }));
    assert.ok(presence.choices[0].message.content.startsWith(' the sea'), presence.choices[0].message.content);
  });

  it('logprobs: every generated token with top_logprobs of the requested count, the sampled one first under greedy',
    T, async () => {
      const c = client(server);
      const req = ask('Where is the tea?', { max_tokens: 12, logprobs: true, top_logprobs: 3 });
      const res = await c.chat.completions.create(req);
      const content = res.choices[0].logprobs?.content;
      assert.ok(Array.isArray(content), JSON.stringify(res.choices[0]));
      assert.equal(content.length, res.usage.completion_tokens);
      assert.equal(content.map((t) => t.token).join(''), res.choices[0].message.content);
      for (const t of content) {
        assert.ok(t.logprob <= 0);
        assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
        assert.equal(t.top_logprobs.length, 3);
        assert.equal(t.top_logprobs[0].token, t.token);
        assert.equal(t.top_logprobs[0].logprob, t.logprob);
        assert.ok(t.top_logprobs[1].logprob <= t.top_logprobs[0].logprob);
      }
      // Streamed: the chunks carry the same tokens, in order.
      const chunks = await collect(await c.chat.completions.create({ ...req, stream: true }));
      const streamed = chunks.flatMap((ch) => ch.choices.flatMap((choice) => tokensOf(choice.logprobs)));
      assert.deepEqual(streamed, content.map((t) => t.token));
      // Not asked: null.
      assert.equal((await c.chat.completions.create(ask('Where is the tea?'))).choices[0].logprobs, null);
      await rejectsNaming(c.chat.completions.create(ask('x', { logprobs: true, top_logprobs: 21 })), 'top_logprobs');
    });

  it('logprobs on /v1/completions: the legacy shape, N alternatives per token', T, async () => {
    const res = await client(server).completions.create({
      model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2,
    });
    const lp = res.choices[0].logprobs;
    assert.equal(lp.tokens.length, res.usage.completion_tokens);
    assert.equal(lp.tokens.join(''), res.choices[0].text);
    assert.equal(lp.text_offset[0], 0);
    lp.tokens.forEach((tok, i) => {
      assert.ok(Object.keys(lp.top_logprobs[i]).length <= 2);
      assert.equal(lp.top_logprobs[i][tok], lp.token_logprobs[i], 'greedy: the token is its position\'s best');
    });
  });

  it('stop: more than four sequences, the one that occurs ends the text', T, async (t) => {
    const c = client(server);
    const full = await c.chat.completions.create(ask('List the aisle codes.', { max_tokens: 40 }));
    const text = full.choices[0].message.content;
    const s = pickStopSequence(text);
    if (s === null) return t.skip(`greedy output too short for a stop sequence: ${JSON.stringify(text)}`);
    const stop = ['\u0001a', '\u0001b', '\u0001c', '\u0001d', '\u0001e', s];
    const stopped = await c.chat.completions.create(ask('List the aisle codes.', { max_tokens: 40, stop }));
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    assert.equal(stopped.choices[0].message.content, text.slice(0, text.indexOf(s)));
  });

  it('temperature defaults to 1: seeds give different answers, the same seed the same one', T, async () => {
    const c = client(server);
    const base = { model: MODEL_ID, messages: [{ role: 'user', content: 'Pick some words at random.' }], max_tokens: 16 };
    const greedy = (await c.chat.completions.create({ ...base, temperature: 0 })).choices[0].message.content;
    const a = (await c.chat.completions.create({ ...base, seed: 1 })).choices[0].message.content;
    const again = (await c.chat.completions.create({ ...base, seed: 1 })).choices[0].message.content;
    const b = (await c.chat.completions.create({ ...base, seed: 2 })).choices[0].message.content;
    assert.equal(a, again, 'a seed makes sampling reproducible');
    assert.notEqual(a, b, 'temperature 1: another seed, another answer');
    assert.ok(a !== greedy || b !== greedy, 'not the greedy answer');
  });

  it('system_fingerprint on the answer and on every chunk', T, async () => {
    const c = client(server);
    const res = await c.chat.completions.create(ask('Hi'));
    assert.match(res.system_fingerprint, /^kvault-[^-]+-[^-]+-[0-9a-f]{8}$/);
    const chunks = await collect(await c.chat.completions.create(ask('Hi', { stream: true })));
    assert.ok(chunks.every((ch) => ch.system_fingerprint === res.system_fingerprint));
    const text = await client(server).completions.create({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2 });
    assert.equal(text.system_fingerprint, res.system_fingerprint);
  });

  it('response_format with tools: the answer follows the schema (as llama-server); a required call is a 400', T,
    async () => {
      const c = client(server);
      const tools = [{
        type: 'function',
        function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Oslo'] } } } },
      }];
      const response_format = {
        type: 'json_schema',
        json_schema: {
          name: 'answer',
          schema: { type: 'object', properties: { answer: { type: 'string', enum: ['yes', 'no'] } }, required: ['answer'], additionalProperties: false },
        },
      };
      const res = await c.chat.completions.create(ask('Is it raining in Oslo?', { tools, response_format, max_tokens: 60 }));
      assert.equal(res.choices[0].finish_reason, 'stop');
      assert.ok(['yes', 'no'].includes(JSON.parse(res.choices[0].message.content).answer), res.choices[0].message.content);
      await rejectsNaming(c.chat.completions.create(ask('x', { tools, response_format, tool_choice: 'required' })),
        'tool_choice');
    });

  it('fields kvault cannot honour are a 400 naming them; unknown fields too', T, async () => {
    const c = client(server);
    await rejectsNaming(c.chat.completions.create(ask('x', { n: 2 })), "'n'");
    await rejectsNaming(c.chat.completions.create(ask('x', { modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } })),
      "'audio'");
    await rejectsNaming(c.chat.completions.create(ask('x', { modalities: ['audio'] })), "'modalities'");
    await rejectsNaming(c.chat.completions.create(ask('x', { prediction: { type: 'content', content: 'x' } })), "'prediction'");
    await rejectsNaming(c.chat.completions.create(ask('x', { web_search_options: {} })), "'web_search_options'");
    await rejectsNaming(c.chat.completions.create(ask('x', { no_such_field: true })), 'no_such_field');
    // Harmless ones are accepted.
    const ok = await c.chat.completions.create(ask('x', {
      store: false, metadata: { run: '1' }, service_tier: 'auto', user: 'u', safety_identifier: 's',
      prompt_cache_key: 'k', modalities: ['text'], seed: 4,
    }));
    assert.equal(ok.object, 'chat.completion');
  });

  it('models.retrieve: the model; an unknown id is a NotFoundError', T, async () => {
    const c = client(server);
    const m = await c.models.retrieve(MODEL_ID);
    assert.equal(m.id, MODEL_ID);
    assert.equal(m.object, 'model');
    await assert.rejects(c.models.retrieve('no-such-model'), (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}`);
      assert.equal(err.code, 'model_not_found');
      return true;
    });
  });
});

describe('OpenAI: without max_tokens, a chat runs until the context ends (--ctx-size 640)', () => {
  const server = useServer({ name: 'openai-ctx', extraArgs: ['--ctx-size', '640'] });

  it('completion_tokens fills the context (end of turn banned, so nothing else ends it)', T, async () => {
    const res = await client(server).chat.completions.create({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], temperature: 0, logit_bias: END_OF_TURN,
    });
    assert.equal(res.choices[0].finish_reason, 'length');
    assert.equal(res.usage.total_tokens, 640);
    assert.ok(res.usage.completion_tokens > 512, `completion_tokens ${res.usage.completion_tokens} > 512 (the old default)`);
  });
});
