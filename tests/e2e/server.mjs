// Starts the real kvault server binary as a child process for one test file (or one suite).
//
//   $KVAULT_BIN serve --model $KVAULT_TEST_MODEL --model-id kvault-tiny --host 127.0.0.1
//       --port <free port> --data-dir <fresh dir under $KVAULT_TEST_TMP> [--api-key ...] [extra args]
//
// (with demoModel: true, no --model: the server makes and serves its demo 'small' model, as
// `make serve` does)
//
// useServer() registers node:test before()/after() hooks in the current suite and returns a handle
// whose fields (port, origin, openaiBaseURL, anthropicBaseURL, dataDir, logFile) are filled in by
// the before() hook. The server's stdout and stderr both go to <dataDir>/server.log.
//
// Env: KVAULT_BIN, KVAULT_TEST_MODEL, KVAULT_TEST_TMP (all required);
//      KVAULT_E2E_NO_AUTH=1 starts servers without --api-key (to debug the harness against a
//      binary that has no authentication yet; the tests that need auth then skip themselves).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

export const MODEL_ID = 'kvault-tiny';
export const KEY_A = 'test-key-A';
export const KEY_B = 'test-key-B';
export const NO_AUTH = process.env.KVAULT_E2E_NO_AUTH === '1';

const HEALTH_POLL_MS = 100;
const HEALTH_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `environment variable ${name} is required (KVAULT_BIN: the kvault binary, ` +
        'KVAULT_TEST_MODEL: a .gguf model, KVAULT_TEST_TMP: a scratch directory)',
    );
  }
  return value;
}

export function env() {
  const bin = path.resolve(requiredEnv('KVAULT_BIN'));
  const model = path.resolve(requiredEnv('KVAULT_TEST_MODEL'));
  const tmp = path.resolve(requiredEnv('KVAULT_TEST_TMP'));
  if (!fs.existsSync(bin)) throw new Error(`KVAULT_BIN=${bin} does not exist`);
  if (!fs.existsSync(model)) throw new Error(`KVAULT_TEST_MODEL=${model} does not exist`);
  fs.mkdirSync(tmp, { recursive: true });
  return { bin, model, tmp };
}

/** A port that was free a moment ago: bind port 0, read the port, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

function logTail(file, lines = 40) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch (err) {
    return `(no log: ${err.message})`;
  }
}

// Children still running when the process exits (a crashed test file) are killed, not orphaned.
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

async function startOnce({ name, extraArgs, auth, demoModel, dataDir: reuse }) {
  const { bin, model, tmp } = env();
  // dataDir: an earlier server's (a restart keeps its KV cache and stored responses).
  const dataDir = reuse ?? fs.mkdtempSync(path.join(tmp, `${name}-`));
  const logFile = path.join(dataDir, 'server.log');
  const port = await freePort();
  // demoModel: no --model, as `make serve` starts it (the demo 'small' model, made in the data dir).
  const modelArgs = demoModel ? [] : ['--model', model, '--model-id', MODEL_ID];
  const args = [
    'serve',
    ...modelArgs,
    '--host', '127.0.0.1',
    '--port', String(port),
    '--data-dir', dataDir,
  ];
  if (auth && !NO_AUTH) args.push('--api-key', KEY_A, '--api-key', KEY_B);
  args.push(...extraArgs);

  const fd = fs.openSync(logFile, 'a');
  fs.writeSync(fd, `$ ${bin} ${args.join(' ')}\n`);
  // kvault reads KVAULT_<OPTION> variables (KVAULT_API_KEYS, KVAULT_PARALLEL, ...): none reach the
  // server, so it runs with exactly the flags above whatever the caller's environment holds.
  const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVAULT_')));
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], env: childEnv });
  fs.closeSync(fd);  // the child holds its own copy
  live.add(child);

  let exited = null;  // {code, signal} once the child is gone
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: null, signal: null, error: err };
      live.delete(child);
      resolve(exited);
    });
  });

  const origin = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  for (;;) {
    if (exited) {
      const how = exited.error ? `failed to start: ${exited.error.message}`
        : `exited (code ${exited.code}, signal ${exited.signal})`;
      const err = new Error(
        `kvault server ${how} before /health answered 200; log ${logFile}:\n${logTail(logFile)}`);
      err.logText = logTail(logFile, 200);
      throw err;
    }
    try {
      const res = await fetch(`${origin}/health`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exitPromise;
      throw new Error(
        `kvault server not healthy after ${HEALTH_TIMEOUT_MS / 1000} s; log ${logFile}:\n${logTail(logFile)}`);
    }
    await sleep(HEALTH_POLL_MS);
  }

  async function stop() {
    if (exited) return exited;
    child.kill('SIGTERM');
    const timer = sleep(STOP_GRACE_MS).then(() => 'timeout');
    if ((await Promise.race([exitPromise, timer])) === 'timeout') {
      fs.appendFileSync(logFile, `\n[e2e] no exit ${STOP_GRACE_MS / 1000} s after SIGTERM: SIGKILL\n`);
      child.kill('SIGKILL');
    }
    return exitPromise;
  }

  return {
    port,
    origin,
    openaiBaseURL: `${origin}/v1`,
    anthropicBaseURL: origin,
    dataDir,
    logFile,
    child,
    stop,
    logTail: (lines) => logTail(logFile, lines),
  };
}

/**
 * Starts a server and waits for GET /health == 200. Retries twice when the server dies at once
 * (the free port was taken between our probe and its bind).
 */
export async function startServer({ name = 'kvault', extraArgs = [], auth = true, demoModel = false, dataDir } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce({ name, extraArgs, auth, demoModel, dataDir });
    } catch (err) {
      lastErr = err;
      if (!/address (already )?in use|cannot listen|EADDRINUSE/i.test(err.logText ?? '')) throw err;
    }
  }
  throw lastErr;
}

/**
 * Registers before()/after() hooks in the current suite: the server starts before the suite's first
 * test and gets SIGTERM (SIGKILL 10 s later) after its last one.
 */
export function useServer(opts = {}) {
  const handle = {};
  before(async () => {
    Object.assign(handle, await startServer(opts));
  }, { timeout: HEALTH_TIMEOUT_MS * 3 + 10_000 });
  after(async () => {
    if (!handle.stop) return;
    const { code, signal } = await handle.stop();
    // A clean shutdown is part of the contract: SIGTERM drains and exits 0.
    if (code !== 0) {
      throw new Error(`kvault server did not exit cleanly on SIGTERM (code ${code}, signal ${signal}); ` +
        `log ${handle.logFile}:\n${handle.logTail()}`);
    }
  }, { timeout: STOP_GRACE_MS + 5_000 });
  return handle;
}
