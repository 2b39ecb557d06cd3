// The models routes through both official SDKs (OpenAI's shape, and Anthropic's when the request
// carries anthropic-version, as the Anthropic SDK's do), and Anthropic's request-id, which the
// Anthropic SDK exposes as `_request_id` on answers and `requestID` on errors.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

import { KEY_A, MODEL_ID, useServer } from './server.mjs';

const T = { timeout: 60_000 };

describe('models routes and request ids, both SDKs', () => {
  const server = useServer({ name: 'models' });
  const anthropic = () => new Anthropic({ apiKey: KEY_A, baseURL: server.anthropicBaseURL, maxRetries: 0 });
  const openai = () => new OpenAI({ apiKey: KEY_A, baseURL: server.openaiBaseURL, maxRetries: 0 });

  it('Anthropic SDK: models.list() and models.retrieve() in Anthropic\'s shape', T, async () => {
    const c = anthropic();
    const ids = [];
    for await (const m of c.models.list()) {
      assert.equal(m.type, 'model');
      assert.equal(m.display_name, m.id);
      assert.match(m.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      ids.push(m.id);
    }
    assert.deepEqual(ids, [MODEL_ID]);
    const one = await c.models.retrieve(MODEL_ID);
    assert.equal(one.id, MODEL_ID);
    assert.match(one._request_id, /^req_/);
    await assert.rejects(c.models.retrieve('no-such-model'), (err) => {
      assert.ok(err instanceof Anthropic.NotFoundError, `got ${err?.constructor?.name}`);
      assert.match(err.requestID, /^req_/);
      assert.equal(err.error?.request_id, err.requestID, 'the error body carries the same request_id');
      return true;
    });
  });

  it('OpenAI SDK: models.list() keeps OpenAI\'s shape', T, async () => {
    const models = [];
    for await (const m of openai().models.list()) models.push(m);
    assert.equal(models.length, 1);
    assert.equal(models[0].object, 'model');
    assert.equal(models[0].owned_by, 'kvault');
  });

  it('Anthropic SDK: every answer and error has a request id', T, async () => {
    const c = anthropic();
    const msg = await c.messages.create({
      model: MODEL_ID, max_tokens: 2, temperature: 0, messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.match(msg._request_id, /^req_/);
    await assert.rejects(c.messages.create({ model: MODEL_ID, max_tokens: -1, messages: [{ role: 'user', content: 'Hi' }] }),
      (err) => {
        assert.ok(err instanceof Anthropic.BadRequestError, `got ${err?.constructor?.name}`);
        assert.match(err.requestID, /^req_/);
        assert.equal(err.error?.request_id, err.requestID);
        return true;
      });
  });
});
