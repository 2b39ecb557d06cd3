// Claude Code itself (npm @anthropic-ai/claude-code, its native binary, pinned in package-lock.json)
// against kvault as `make serve` starts it: no --model (the demo 'small' chat model: Qwen3 template
// with its thinking switch, 64K context, answers that end), no key, default flags.
//
// Offline: telemetry and non-essential traffic off, HOME and the project in a scratch directory.
// The model has random weights, so Claude Code's turns are gibberish; what is checked is that every
// request Claude Code sends is served (200), that a session's later turns read their prompt from
// kvault's cache, and that Claude Code's default max_tokens (far beyond the context) ends cleanly
// at the end of the context.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { env, startServer, useServer } from './server.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const CLAUDE = path.join(here, 'node_modules', '.bin', 'claude');
const T = { timeout: 600_000 };
const ADMIN_KEY = 'e2e-admin';

/** One `claude -p` run; returns its parsed JSON result. */
async function claude(server, home, project, args) {
  const childEnv = {
    PATH: process.env.PATH,
    HOME: home,
    ANTHROPIC_BASE_URL: server.origin,
    ANTHROPIC_API_KEY: 'kvault-e2e',  // the server has no keys: any is accepted
    DISABLE_TELEMETRY: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
  };
  const { stdout } = await run(CLAUDE, ['-p', '--output-format', 'json', ...args], {
    cwd: project, env: childEnv, timeout: 540_000, maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout);
}

/** The server's finished-request log lines (routes.cpp LogRequest) for /v1/messages. */
function messageRequests(logFile) {
  const lines = fs.readFileSync(logFile, 'utf8').split('\n');
  const out = [];
  for (const line of lines) {
    const m = line.match(/request (\S+) api=anthropic\.messages agent=(\S+) status=(\d+) prompt=(\d+) cached=(\d+) \(pool \d+ ram \d+ disk (\d+) remote \d+\) generated=(\d+)/);
    if (m) {
      out.push({ id: m[1], agent: m[2], status: Number(m[3]), prompt: Number(m[4]), cached: Number(m[5]),
        disk: Number(m[6]), generated: Number(m[7]) });
    }
  }
  return out;
}

/** HTTP answers the server logged as refused (http_server.cpp logs every status >= 400 but 429). */
function refusals(logFile) {
  return fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => /http: \S+ \/v1\/\S* answered \d+/.test(l));
}

describe('Claude Code against make serve\'s server', () => {
  it('three turns of one session, the third after a server restart; turns 2 and 3 >= 90% from cache', T, async () => {
    const { tmp } = env();
    const home = fs.mkdtempSync(path.join(tmp, 'claude-home-'));
    const project = fs.mkdtempSync(path.join(tmp, 'claude-project-'));
    fs.writeFileSync(path.join(project, 'README.md'), '# demo project\n');
    // (an admin key only to read /admin/agents: make serve SERVE_ARGS="--admin-key …")
    const opts = { name: 'claude-code', auth: false, demoModel: true, extraArgs: ['--admin-key', ADMIN_KEY] };
    let server = await startServer(opts);
    const turns = [];
    let seen = 0;
    const take = () => {
      const all = messageRequests(server.logFile);
      const mine = all.slice(seen);
      seen = all.length;
      return mine;
    };
    let first;
    try {
      const models = await (await fetch(`${server.openaiBaseURL}/models`)).json();
      assert.ok(models.data[0].meta.n_ctx >= 65536, `the demo model holds a Claude Code prompt: ${JSON.stringify(models.data[0])}`);
      first = await claude(server, home, project, ['Say hello in one word.']);
      assert.equal(first.is_error, false, JSON.stringify(first));
      turns.push(take());
      const second = await claude(server, home, project, ['--continue', 'And now in two words.']);
      assert.equal(second.is_error, false, JSON.stringify(second));
      assert.equal(second.session_id, first.session_id);
      turns.push(take());
    } finally {
      assert.deepEqual(refusals(server.logFile), [], 'a request Claude Code sent was refused');
      assert.equal((await server.stop()).code, 0);
    }
    // A restart: the pool is empty; the session's KV comes back from disk.
    server = await startServer({ ...opts, dataDir: server.dataDir });
    try {
      const third = await claude(server, home, project, ['--resume', first.session_id, 'Once more.']);
      assert.equal(third.is_error, false, JSON.stringify(third));
      assert.equal(third.session_id, first.session_id);
      turns.push(take());
      assert.deepEqual(refusals(server.logFile), [], 'a request Claude Code sent was refused');
      // /admin/agents knows the session as an agent.
      const res = await fetch(`${server.origin}/admin/agents`, { headers: { Authorization: `Bearer ${ADMIN_KEY}` } });
      const agents = await res.json();
      assert.equal(res.status, 200, JSON.stringify(agents));
      const agent = agents.agents.find((a) => a.id === first.session_id);
      assert.ok(agent, `session ${first.session_id} in /admin/agents: ${JSON.stringify(agents)}`);
      assert.ok(agent.turns >= 3, `agent turns: ${agent.turns}`);
    } finally {
      assert.equal((await server.stop()).code, 0);
    }

    for (const [i, reqs] of turns.entries()) {
      assert.ok(reqs.length >= 1, `turn ${i + 1}: no /v1/messages request reached the engine`);
      for (const r of reqs) assert.equal(r.status, 200, `turn ${i + 1}: ${JSON.stringify(r)}`);
      // The session's own request (the longest prompt of the turn) is named after its session id.
      const main = reqs.reduce((a, b) => (b.prompt > a.prompt ? b : a));
      assert.equal(main.agent, first.session_id, `turn ${i + 1}: agent named after the session`);
      assert.ok(main.prompt > 5000, `turn ${i + 1}: Claude Code's prompt is long (${main.prompt} tokens)`);
      // Printed for README's figures: the session's request of each turn and how much came back.
      console.log(`claude-code turn ${i + 1}: ${main.cached} of ${main.prompt} prompt tokens from the cache, ${main.disk} from disk`);
      if (i > 0) {
        assert.ok(main.cached >= 0.9 * main.prompt,
          `turn ${i + 1}: ${main.cached} of ${main.prompt} prompt tokens from cache (< 90%)`);
        // Beyond the shared system prompt and tools: the session's own earlier turns came back
        // too (all but the new message and the last, partial block are reused).
        assert.ok(main.prompt - main.cached < 200, `turn ${i + 1}: ${main.prompt - main.cached} tokens computed`);
      }
    }
    assert.ok(turns[2].at(-1).disk > 0, `turn 3 after the restart restored from disk: ${JSON.stringify(turns[2])}`);
  });
});

describe('Claude Code\'s max_tokens (128000) on a smaller context', () => {
  const server = useServer({ name: 'claude-code-ctx', auth: false, demoModel: true, extraArgs: ['--ctx-size', '2048'] });

  it('ends at the end of the context with model_context_window_exceeded', T, async () => {
    const post = async (route, body) => {
      const res = await fetch(`${server.origin}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    };
    // A prompt that leaves 3 tokens of the 2048-token context (measured with count_tokens).
    let words = 2000;
    const ask = (n) => ({ model: 'claude-opus-5-5', messages: [{ role: 'user', content: 'word '.repeat(n).trim() }] });
    for (let i = 0; i < 4; i++) {
      const { body } = await post('/v1/messages/count_tokens', ask(words));
      words += 2048 - 3 - body.input_tokens;
    }
    const { status, body } = await post('/v1/messages', { ...ask(words), max_tokens: 128000, temperature: 0 });
    assert.equal(status, 200, JSON.stringify(body));
    const u = body.usage;
    const prompt = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens;
    assert.equal(prompt + u.output_tokens, 2048, JSON.stringify(u));
    assert.equal(body.stop_reason, 'model_context_window_exceeded');
    // A prompt that alone does not fit: the wording Claude Code parses to compact.
    const over = await post('/v1/messages', { ...ask(words + 100), max_tokens: 128000 });
    assert.equal(over.status, 400);
    assert.match(over.body.error.message, /^prompt is too long: \d+ tokens > \d+ maximum$/);
  });
});
