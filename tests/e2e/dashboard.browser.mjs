// The dashboard (GET /ui) in a real browser: Debian's Chromium, driven by puppeteer-core, against
// the real kvault binary with API keys and an admin key. The page must ask for a key and refuse a
// wrong one, show three agents' turns with where their KV is, evict one from the page (its bar
// moves from the pool to RAM/disk), show an agent's turns, sort, filter, forget (after a confirm),
// fit a phone's screen, and give an API key its own tenant's agents without buttons. Any browser
// console error, page error or unexpected HTTP error fails the test (only the 401s of the step
// that checks a refused key are expected), and so does a key in a URL or in the server's log.
//
//   KVAULT_BIN=… KVAULT_TEST_MODEL=… KVAULT_TEST_TMP=… tests/e2e/run.sh dashboard.browser.mjs
//
// KVAULT_E2E_ARTIFACTS  where screenshots go (default $KVAULT_TEST_TMP/dashboard-artifacts)
// KVAULT_CHROMIUM       the browser (default /usr/lib/chromium/chromium, else /usr/bin/chromium)
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import puppeteer from 'puppeteer-core';

import { LONG_SYSTEM } from './common.mjs';
import { env, KEY_A, KEY_B, MODEL_ID, useServer } from './server.mjs';

const ADMIN_KEY = 'test-admin-key-D';
const WRONG_KEY = 'not-a-key-of-this-server';
const KEYS = [KEY_A, KEY_B, ADMIN_KEY, WRONG_KEY];
const WAIT = { timeout: 30_000, polling: 100 };

function chromiumPath() {
  const candidates = [process.env.KVAULT_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`no Chromium at ${candidates.join(', ')}: make deps installs Debian's chromium`);
  return found;
}

function artifactsDir() {
  const dir = process.env.KVAULT_E2E_ARTIFACTS || path.join(env().tmp, 'dashboard-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

describe('dashboard in Chromium', () => {
  const server = useServer({ name: 'dashboard', extraArgs: ['--admin-key', ADMIN_KEY] });
  let browser;
  let page;
  let shots;
  const problems = [];  // console errors, page errors, unexpected HTTP errors, keys in URLs
  let expect401 = false;  // while the test enters a wrong key (or none): the page's 401s are expected
  const seen401 = [];

  async function chat(key, agent, messages) {
    const res = await fetch(`${server.origin}/v1/chat/completions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${key}`, 'X-Agent-Id': agent, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL_ID, max_tokens: 8, temperature: 0, messages }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return body;
  }

  // The first turn of `agent`, and (with `answer`) its second one on top of the first.
  const turn1 = (agent) => [{ role: 'system', content: LONG_SYSTEM }, { role: 'user', content: `Where is crate ${agent}?` }];
  const turn2 = (agent, answer) => [...turn1(agent), { role: 'assistant', content: answer }, { role: 'user', content: 'And the one after it?' }];

  const row = (agent) => `#agents tbody tr[data-agent="${agent}"]`;
  // The agent's tier bar's block counts, or null while its row is not shown.
  const placement = (agent) => page.$eval(row(agent), (tr) => {
    const b = tr.querySelector('.tierbar').dataset;
    return { pool: +b.pool, ram: +b.ram, disk: +b.disk, none: +b.none };
  }).catch(() => null);
  const shownAgents = () => page.$$eval('#agents tbody tr', (trs) => trs.map((tr) => tr.dataset.agent));
  // The table is rendered again each time the overview refreshes: the element a click found may
  // be replaced before the click lands ("detached", nothing clicked), then it is found again.
  async function click(selector) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await page.click(selector);
      } catch (e) {
        if (attempt >= 5 || !/detached/i.test(String(e && e.message))) throw e;
      }
    }
  }

  async function login(key) {
    await page.waitForSelector('#login[open]', WAIT);
    await page.type('#login-key', key);
    await page.click('#login-submit');
  }

  before(async () => {
    shots = artifactsDir();
    browser = await puppeteer.launch({
      executablePath: chromiumPath(),
      headless: true,
      userDataDir: fs.mkdtempSync(path.join(env().tmp, 'chromium-')),
      args: [
        '--headless=new',
        ...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []),
        '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
        '--disable-extensions', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const url = msg.location()?.url ?? '';
      const text = msg.text();
      if (expect401 && /status of 401/.test(text) && /\/admin\/(overview|events)/.test(url)) return;
      problems.push(`console error: ${text} (${url})`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('request', (req) => {
      for (const k of KEYS) if (req.url().includes(k)) problems.push(`a key in a URL: ${req.url()}`);
    });
    page.on('requestfailed', (req) => {
      const aborted = req.failure()?.errorText === 'net::ERR_ABORTED' && req.url().endsWith('/admin/events');
      if (!aborted) problems.push(`request failed: ${req.url()} ${req.failure()?.errorText}`);
    });
    page.on('response', (res) => {
      if (res.status() < 400) return;
      if (res.status() === 401 && expect401) {
        seen401.push(res.url());
        return;
      }
      problems.push(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
    });
  }, { timeout: 60_000 });

  after(async () => {
    if (browser) await browser.close();
  });

  test('the page is served from the binary with its security headers', async () => {
    const res = await fetch(`${server.origin}/ui`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/html/);
    assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    const etag = res.headers.get('etag');
    assert.ok(etag);
    const again = await fetch(`${server.origin}/ui`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    const js = await fetch(`${server.origin}/ui/app.js`);
    assert.match(js.headers.get('content-type'), /^text\/javascript/);
  });

  test('asks for a key and refuses a wrong one', async () => {
    expect401 = true;
    await page.goto(`${server.origin}/ui`, { waitUntil: 'domcontentloaded' });
    await login(WRONG_KEY);
    await page.waitForFunction(() => {
      const e = document.getElementById('login-error');
      return document.getElementById('login').open && !e.hidden && /refused/.test(e.textContent);
    }, WAIT);
    assert.equal(await page.$eval('#main', (m) => m.hidden), true, 'no data behind a wrong key');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept');
    await page.screenshot({ path: path.join(shots, 'login-refused.png') });
    assert.ok(seen401.length >= 2, `the probe without a key and the wrong key both got 401: ${seen401}`);
    expect401 = false;
  });

  test('the admin key opens the overview', async () => {
    await login(ADMIN_KEY);
    await page.waitForFunction(() => !document.getElementById('main').hidden &&
      document.getElementById('viewer').textContent === 'admin' && document.getElementById('conn').textContent === 'live', WAIT);
    for (const card of ['pool', 'tiers', 'throughput', 'latency', 'reuse', 'models']) {
      assert.ok(await page.$(`#card-${card}`), `overview card ${card}`);
    }
    assert.equal(await page.$eval('#model', (m) => m.textContent), MODEL_ID);
    assert.equal(await page.evaluate(() => Object.values(sessionStorage).includes('test-admin-key-D')), true);
  });

  test("three agents' turns appear with where their KV is", { timeout: 120_000 }, async () => {
    await chat(KEY_B, 'delta', turn1('delta'));
    const a1 = await chat(KEY_A, 'alpha', turn1('alpha'));
    await chat(KEY_A, 'beta', turn1('beta'));
    const a2 = await chat(KEY_A, 'alpha', turn2('alpha', a1.choices[0].message.content));
    assert.ok(a2.usage.prompt_tokens_details.cached_tokens > 0, 'the second turn reused the first one');
    await chat(KEY_A, 'gamma', turn1('gamma'));
    await page.waitForFunction((agents) => agents.every((a) => document.querySelector(`#agents tbody tr[data-agent="${a}"]`)),
      WAIT, ['alpha', 'beta', 'gamma', 'delta']);
    // gamma ran last: its conversation is resident in the pool; the others went down to RAM.
    await page.waitForFunction(() => {
      const d = (a) => document.querySelector(`#agents tbody tr[data-agent="${a}"] .tierbar`)?.dataset;
      return d('gamma') && +d('gamma').pool > 0 && +d('alpha').pool === 0 && +d('alpha').ram > 0;
    }, WAIT);
    const alpha = await page.$eval(row('alpha'), (tr) => ({
      turns: tr.children[2].textContent, cached: tr.querySelector('.cached').textContent,
      tenant: getComputedStyle(tr.querySelector('.col-tenant')).display,
    }));
    assert.equal(alpha.turns, '2');
    assert.match(alpha.cached, /^[1-9]\d* %$/, 'share of the last turn from cache');
    assert.notEqual(alpha.tenant, 'none', 'admins see the tenant column');
    await page.waitForFunction(() => /[1-9]/.test(document.querySelector('#card-reuse .reuse-l strong').textContent), WAIT);
    await page.screenshot({ path: path.join(shots, 'dashboard.png'), fullPage: true });
  });

  test("evicting an agent from the page moves its bar from the pool to RAM/disk", async () => {
    const before = await placement('gamma');
    assert.ok(before.pool > 0, JSON.stringify(before));
    const dialog = new Promise((resolve) => page.once('dialog', async (d) => {
      resolve({ type: d.type(), message: d.message() });
      await d.accept();
    }));
    await click(`${row('gamma')} .act-evict`);
    const d = await dialog;
    assert.equal(d.type, 'confirm');
    assert.match(d.message, /Evict agent "gamma"/);
    await page.waitForFunction(() => {
      const d = document.querySelector('#agents tbody tr[data-agent="gamma"] .tierbar')?.dataset;
      return d && +d.pool === 0 && +d.ram + +d.disk > 0;
    }, WAIT);
    const afterEvict = await placement('gamma');
    assert.ok(afterEvict.disk > 0, `kept on disk: ${JSON.stringify(afterEvict)}`);
    await page.waitForFunction(() => /Evicted gamma/.test(document.getElementById('toast').textContent), WAIT);
    await page.screenshot({ path: path.join(shots, 'after-evict.png'), fullPage: true });
  });

  test("an agent's detail shows its turns", async () => {
    await click(`${row('alpha')} th .link`);
    await page.waitForFunction(() => !document.getElementById('detail').hidden &&
      document.querySelectorAll('#detail table.turns tbody tr').length === 2, WAIT);
    const turns = await page.$$eval('#detail table.turns tbody tr', (trs) =>
      trs.map((tr) => ({ cached: tr.querySelector('.cached').textContent, computed: tr.querySelector('.computed').textContent })));
    assert.equal(turns[0].cached, '0', 'the first turn was computed');
    assert.notEqual(turns[1].cached, '0', 'the second came from the cache');
    assert.ok(await page.$('#detail svg.turn-chart rect'), 'the turns chart');
    await page.screenshot({ path: path.join(shots, 'agent-detail.png'), fullPage: true });
    await page.click('#detail-close');
  });

  test('sorts and filters the agents', async () => {
    await click('#agents thead th[data-key="id"]');
    assert.deepEqual(await shownAgents(), ['alpha', 'beta', 'delta', 'gamma']);
    await click('#agents thead th[data-key="id"]');
    assert.deepEqual(await shownAgents(), ['gamma', 'delta', 'beta', 'alpha']);
    await page.type('#filter', 'alp');
    await page.waitForFunction(() => document.querySelectorAll('#agents tbody tr').length === 1, WAIT);
    assert.deepEqual(await shownAgents(), ['alpha']);
    await page.$eval('#filter', (f) => { f.value = ''; f.dispatchEvent(new Event('input')); });
    assert.equal((await shownAgents()).length, 4);
  });

  test('forget asks first; declined it keeps the agent, accepted it removes it', async () => {
    page.once('dialog', (d) => d.dismiss());
    await click(`${row('beta')} .act-forget`);
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(await page.$(row('beta')), 'declined: still there');
    page.once('dialog', (d) => d.accept());
    await click(`${row('beta')} .act-forget`);
    await page.waitForFunction(() => !document.querySelector('#agents tbody tr[data-agent="beta"]'), WAIT);
    const res = await fetch(`${server.origin}/admin/agents/beta`, { headers: { Authorization: `Bearer ${ADMIN_KEY}` } });
    assert.equal(res.status, 404, 'forgotten by the server');
  });

  test("fits a phone's screen", async () => {
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    await page.waitForFunction(() => document.getElementById('conn').textContent === 'live', WAIT);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow} px`);
    await page.screenshot({ path: path.join(shots, 'phone.png'), fullPage: true });
    await page.setViewport({ width: 1280, height: 900 });
  });

  test("an API key sees its own tenant's agents, read-only", async () => {
    await page.click('#signout');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await login(KEY_A);
    await page.waitForFunction(() => /read-only/.test(document.getElementById('viewer').textContent) &&
      document.querySelectorAll('#agents tbody tr').length > 0, WAIT);
    assert.deepEqual((await shownAgents()).sort(), ['alpha', 'gamma'], 'not delta: another tenant');
    assert.equal(await page.$('.act-evict, .act-forget'), null, 'no buttons');
    const tenantShown = await page.$eval(`${row('alpha')} .col-tenant`, (td) => getComputedStyle(td).display);
    assert.equal(tenantShown, 'none');
    await page.screenshot({ path: path.join(shots, 'api-key-view.png'), fullPage: true });
    // The server enforces it too: the other tenant sees only delta, and an API key cannot evict.
    const b = await (await fetch(`${server.origin}/admin/overview`, { headers: { Authorization: `Bearer ${KEY_B}` } })).json();
    assert.deepEqual(b.agents.map((a) => a.id), ['delta']);
    assert.equal(b.viewer.can_manage, false);
    const evict = await fetch(`${server.origin}/admin/agents/alpha/evict`, { method: 'POST', headers: { Authorization: `Bearer ${KEY_A}` } });
    assert.equal(evict.status, 403);
  });

  test('no console errors, page errors or unexpected HTTP errors; no key in a URL or the log', () => {
    assert.deepEqual(problems, []);
    const log = fs.readFileSync(server.logFile, 'utf8');
    for (const k of [KEY_A, KEY_B, ADMIN_KEY, WRONG_KEY]) {
      // The command line at the top of the log names the keys the server was started with: skip it.
      const body = log.split('\n').slice(1).join('\n');
      assert.equal(body.includes(k), false, `key ${k} in the server log`);
    }
  });
});
