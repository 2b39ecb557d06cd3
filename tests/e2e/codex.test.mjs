// Codex CLI itself (npm @openai/codex, its native binary, pinned in package-lock.json) against
// kvault as `make serve` starts it (the demo 'small' chat model), over the Responses API, offline:
// a temporary CODEX_HOME whose provider points at the server (wire_api = "responses"), update
// checks, analytics, plugins and the hosted web_search tool off. `codex exec`, then
// `codex exec resume --last` for a second turn: every request is served (200), the second turn
// reads >= 90 % of its prompt from kvault's cache, and the thread is one agent.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { env, useServer } from './server.mjs';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const CODEX = path.join(here, 'node_modules', '.bin', 'codex');
const T = { timeout: 600_000 };

function config(server) {
  return `model = "demo-small"
model_provider = "kvault"
check_for_update_on_startup = false
web_search = "disabled"
[analytics]
enabled = false
[features]
plugins = false
apps = false
[model_providers.kvault]
name = "kvault"
base_url = "${server.openaiBaseURL}"
env_key = "KVAULT_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
`;
}

/** One `codex exec` run (JSONL events on stdout); returns the parsed events. */
async function codex(home, project, args) {
  const child = run(CODEX, ['exec', '--skip-git-repo-check', '--json', ...args], {
    cwd: project,
    env: { PATH: process.env.PATH, HOME: home, CODEX_HOME: home, KVAULT_API_KEY: 'kvault-e2e' },
    timeout: 540_000,
    maxBuffer: 64 << 20,
  });
  child.child.stdin.end();  // codex reads stdin for more input unless it is closed
  const { stdout } = await child;
  return stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

/** The server's finished-request log lines for /v1/responses. */
function responsesRequests(logFile) {
  const out = [];
  for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
    const m = line.match(/api=openai\.responses agent=(\S+) status=(\d+) prompt=(\d+) cached=(\d+)/);
    if (m) out.push({ agent: m[1], status: Number(m[2]), prompt: Number(m[3]), cached: Number(m[4]) });
  }
  return out;
}

describe('Codex CLI against make serve\'s server', () => {
  const server = useServer({ name: 'codex', auth: false, demoModel: true });

  it('codex exec, then codex exec resume: every request served, turn 2 from the cache', T, async () => {
    const { tmp } = env();
    const home = fs.mkdtempSync(path.join(tmp, 'codex-home-'));
    const project = fs.mkdtempSync(path.join(tmp, 'codex-project-'));
    fs.writeFileSync(path.join(home, 'config.toml'), config(server));

    const first = await codex(home, project, ['Say hello in one word.']);
    const thread = first.find((e) => e.type === 'thread.started')?.thread_id;
    assert.ok(thread, JSON.stringify(first));
    assert.ok(first.some((e) => e.type === 'turn.completed'), JSON.stringify(first));
    assert.ok(first.some((e) => e.type === 'item.completed' && e.item.type === 'agent_message'), JSON.stringify(first));
    const afterFirst = responsesRequests(server.logFile).length;

    const second = await codex(home, project, ['resume', '--last', 'And now in two words.']);
    assert.ok(second.some((e) => e.type === 'turn.completed'), JSON.stringify(second));
    assert.ok(!second.some((e) => e.type === 'turn.failed' || e.type === 'error'), JSON.stringify(second));

    const refused = fs.readFileSync(server.logFile, 'utf8').split('\n').filter((l) => /http: \S+ \/v1\/\S* answered/.test(l));
    assert.deepEqual(refused, [], 'a request Codex sent was refused');
    const reqs = responsesRequests(server.logFile);
    assert.ok(afterFirst >= 1 && reqs.length > afterFirst, JSON.stringify(reqs));
    for (const r of reqs) {
      assert.equal(r.status, 200);
      assert.equal(r.agent, thread, 'prompt_cache_key (the thread) names the agent');
    }
    const turn2 = reqs.slice(afterFirst).reduce((a, b) => (b.prompt > a.prompt ? b : a));
    assert.ok(turn2.prompt > 5000, `Codex's prompt is long (${turn2.prompt} tokens)`);
    assert.ok(turn2.cached >= 0.9 * turn2.prompt, `turn 2: ${turn2.cached} of ${turn2.prompt} prompt tokens from cache`);
    // Beyond the instructions and tools every Codex request shares: the replayed first turn renders
    // to the same tokens, so only the new message (and the last, partial block) is computed.
    assert.ok(turn2.prompt - turn2.cached < 200, `turn 2: ${turn2.prompt - turn2.cached} tokens computed`);
  });
});
