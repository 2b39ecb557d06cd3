// The official Anthropic SDK with thinking on and off, on the demo chat model `make serve` makes
// (Qwen3 chat template with its thinking switch, answers that end). Random weights: the model never
// opens a reasoning block by itself, so what is checked is that `thinking` drives the template
// (the rendered prompt differs), that thinking blocks sent back are rendered as reasoning (also
// from a kvault signature alone, as Claude Code sends them with display "omitted"), and that the
// requests Claude Code makes are answered in Anthropic's shapes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';

import { useServer } from './server.mjs';

const T = { timeout: 120_000 };
const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const TOOL = { name: 'Bash', description: 'Run a command', input_schema: { type: 'object', properties: { command: { type: 'string' } } } };

describe('Anthropic SDK: thinking on the thinking-template demo model', () => {
  const server = useServer({ name: 'anthropic-thinking', auth: false, demoModel: true, extraArgs: ['--ctx-size', '8192'] });
  const client = () => new Anthropic({ apiKey: 'x', baseURL: server.anthropicBaseURL, maxRetries: 0, timeout: 60_000 });
  const user = (text) => ({ role: 'user', content: text });

  it('thinking on and off render different prompts; answers end by themselves', T, async () => {
    const c = client();
    const base = { model: 'demo', messages: [user('What is 2 + 2?')] };
    const off = await c.messages.countTokens({ ...base, thinking: { type: 'disabled' } });
    const on = await c.messages.countTokens({ ...base, thinking: { type: 'enabled', budget_tokens: 1024 } });
    const absent = await c.messages.countTokens(base);
    // Qwen3's no-thinking form closes an empty reasoning block in the prompt.
    assert.ok(off.input_tokens > on.input_tokens, `off ${off.input_tokens} vs on ${on.input_tokens}`);
    assert.equal(absent.input_tokens, off.input_tokens, 'no thinking field: thinking off, as Anthropic');

    for (const thinking of [{ type: 'enabled', budget_tokens: 1024 }, { type: 'disabled' }, { type: 'adaptive' }]) {
      const msg = await c.messages.create({ ...base, max_tokens: 2000, thinking });
      assert.equal(msg.stop_reason, 'end_turn', `${JSON.stringify(thinking)}: the demo model ends its answer`);
      assert.ok(msg.usage.output_tokens < 200, `${msg.usage.output_tokens} tokens`);
      for (const block of msg.content) assert.ok(['text', 'thinking'].includes(block.type), block.type);
    }
    const streamed = await c.messages
      .stream({ ...base, max_tokens: 2000, thinking: { type: 'adaptive', display: 'omitted' } })
      .finalMessage();
    assert.equal(streamed.stop_reason, 'end_turn');
  });

  it('thinking blocks sent back are the turn\'s reasoning, from their text or a kvault signature', T, async () => {
    const c = client();
    // Qwen3 renders the reasoning of assistant turns after the last user query: a tool loop.
    const history = (blocks) => [
      user('List the files.'),
      { role: 'assistant', content: [...blocks, { type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'ls' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'a.txt b.txt' }] },
    ];
    const count = async (blocks) =>
      (await c.messages.countTokens({ model: 'demo', tools: [TOOL], thinking: { type: 'adaptive' }, messages: history(blocks) })).input_tokens;
    const reasoning = 'The user wants a listing, so I will run ls in the working directory.';
    const none = await count([]);
    const text = await count([{ type: 'thinking', thinking: reasoning, signature: 'x' }]);
    assert.ok(text > none + 10, `reasoning rendered: ${text} vs ${none}`);

    // kvault's signature carries the reasoning (api/anthropic_request.h): a block sent back with
    // display "omitted" (no text) renders as the same reasoning.
    const forged = Buffer.from(reasoning).toString('base64');
    const fromSignature = await count([{ type: 'thinking', thinking: '', signature: `kvault1.${forged}` }]);
    assert.equal(fromSignature, text, 'a signature-only block renders as its reasoning');
    const foreign = await count([{ type: 'thinking', thinking: '', signature: 'EqQBCkYIBxgCKkDforeign' }]);
    assert.equal(foreign, none, 'another server\'s signature carries nothing readable');
  });

  it('Claude Code\'s request shapes: a system turn in messages, images in history, unknown fields', T, async () => {
    const c = client();
    const msg = await c.messages.create({
      model: 'claude-opus-5-5',
      max_tokens: 128000,
      messages: [user('hello'), { role: 'system', content: '<env>cwd: /tmp</env>' }],
    });
    assert.equal(msg.type, 'message');
    const image = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1X1 } };
    // An image in an earlier turn: a placeholder, the conversation goes on.
    const later = await c.messages.create({
      model: 'demo', max_tokens: 20,
      messages: [{ role: 'user', content: [image, { type: 'text', text: 'look' }] }, { role: 'assistant', content: 'ok' }, user('next')],
    });
    assert.equal(later.type, 'message');
    // In the last turn: a 400 naming the block.
    await assert.rejects(
      c.messages.create({ model: 'demo', max_tokens: 20, messages: [{ role: 'user', content: [image] }] }),
      (err) => err.status === 400 && /messages\[0\]\.content\[0\].*image/.test(err.message));
    // A field the Messages reference does not have.
    const res = await fetch(`${server.origin}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'demo', max_tokens: 5, messages: [user('x')], frobnicate: true }),
    });
    const body = await res.json();
    assert.equal(res.status, 400);
    assert.equal(body.error.message, 'frobnicate: Extra inputs are not permitted');
  });
});
