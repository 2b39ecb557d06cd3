// The kvault dashboard (GET /ui): asks for a key when the server has keys, then shows the live
// overview (GET /admin/events, one event a second) and the agents the key may see; an agent's
// turns on demand (GET /admin/agents/{id}/turns); Evict and Forget for admin keys.

import { renderAgents, bindSorting } from './agents.js';
import { agentPath, call, HttpError, storedKey, storeKey, streamOverview } from './api.js';
import { renderDetail } from './detail.js';
import { renderOverview } from './overview.js';

const $ = (id) => document.getElementById(id);
const state = { o: null, filter: '', detail: null, detailTurns: -1, stream: null, generation: 0 };

function toast(text, isError = false) {
  const t = $('toast');
  t.textContent = text;
  t.classList.toggle('toast-error', isError);
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function setConn(text, cls) {
  const c = $('conn');
  c.textContent = text;
  c.className = `chip ${cls}`;
}

function showLogin(message) {
  stopStream();
  $('main').hidden = true;
  $('signout').hidden = true;
  const err = $('login-error');
  err.textContent = message || '';
  err.hidden = !message;
  $('login-key').value = '';
  if (!$('login').open) $('login').showModal();
  $('login-key').focus();
}

function renderAll() {
  const o = state.o;
  if (!o) return;
  $('model').textContent = o.model || 'no model loaded';
  const status = $('status');
  status.textContent = o.degraded.length ? `${o.status}: ${o.degraded.join(', ')}` : o.status;
  status.className = `chip chip-${o.status}`;
  const v = o.viewer;
  $('viewer').textContent = v.role === 'admin' ? 'admin' : v.role === 'tenant' ? `tenant ${v.tenant} · read-only` : 'open · read-only';
  renderOverview($('overview'), o);
  const shown = renderAgents($('agents'), o, state.filter, { open: openDetail, evict, forget });
  $('agents-count').textContent = o.agents_total > o.agents.length
    ? `(${shown} shown; the ${o.agents.length} most recent of ${o.agents_total})`
    : `(${shown}${shown !== o.agents.length ? ` of ${o.agents.length}` : ''})`;
  $('agents-empty').hidden = o.agents.length > 0;
  if (state.detail) {
    const a = o.agents.find((x) => x.id === state.detail.id && x.tenant === state.detail.tenant);
    if (!a) closeDetail();
    else if (a.turns !== state.detailTurns || a.running !== state.detail.running) refreshDetail(a);
  }
}

function onOverview(o) {
  state.o = o;
  $('main').hidden = false;
  $('signout').hidden = o.viewer.role === 'open';
  renderAll();
}

function stopStream() {
  state.generation++;
  if (state.stream) state.stream.abort();
  state.stream = null;
}

// Keeps the event stream open: reconnects after 2 s when it ends; a 401 asks for the key again.
async function runStream() {
  stopStream();
  const generation = state.generation;
  const controller = new AbortController();
  state.stream = controller;
  while (generation === state.generation) {
    try {
      setConn('live', 'chip-ok');
      await streamOverview(onOverview, controller.signal);
      setConn('reconnecting', 'chip-degraded');
    } catch (err) {
      if (generation !== state.generation) return;
      if (err instanceof HttpError && err.status === 401) {
        storeKey('');
        showLogin('The key was refused.');
        return;
      }
      setConn('reconnecting', 'chip-degraded');
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function start() {
  try {
    onOverview(await call('GET', '/admin/overview'));
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) {
      const hadKey = Boolean(storedKey());
      storeKey('');
      showLogin(hadKey ? 'The key was refused: it is neither an admin key nor an API key of this server.' : '');
      return;
    }
    setConn('unreachable', 'chip-degraded');
    toast(`Cannot read the overview: ${err.message}`, true);
    setTimeout(start, 3000);
    return;
  }
  runStream();
}

async function refreshOverview() {
  try {
    onOverview(await call('GET', '/admin/overview'));
  } catch {
    // the stream brings the next one
  }
}

async function refreshDetail(a) {
  state.detail = a;
  state.detailTurns = a.turns;
  try {
    const d = await call('GET', agentPath(a, '/turns'));
    if (state.detail !== a) return;
    $('detail-title').textContent = `Agent ${a.id}`;
    renderDetail($('detail-body'), d);
    $('detail').hidden = false;
  } catch (err) {
    toast(`Cannot read ${a.id}'s turns: ${err.message}`, true);
  }
}

function openDetail(a) {
  refreshDetail(a).then(() => $('detail').scrollIntoView({ behavior: 'smooth', block: 'start' }));
}

function closeDetail() {
  state.detail = null;
  $('detail').hidden = true;
}

async function evict(a) {
  if (!window.confirm(`Evict agent "${a.id}" from the pool and RAM?\nIts KV stays on disk; its next turn is restored from there.`)) return;
  try {
    const r = await call('POST', agentPath(a, '/evict'));
    toast(`Evicted ${a.id}: ${r.evicted.pool_tokens} pool tokens freed, ${r.evicted.ram_blocks} RAM blocks dropped (${r.disk.blocks} on disk).`);
    await refreshOverview();
  } catch (err) {
    toast(`Evict failed: ${err.message}`, true);
  }
}

async function forget(a) {
  if (!window.confirm(`Forget agent "${a.id}"?\nIts record and the KV blocks only it uses are deleted; its next turn starts cold.`)) return;
  try {
    const r = await call('DELETE', agentPath(a));
    toast(`Forgot ${a.id}: ${r.blocks_removed} blocks removed.`);
    await refreshOverview();
  } catch (err) {
    toast(`Forget failed: ${err.message}`, true);
  }
}

function init() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('login-key').value.trim();
    if (!key) return;
    storeKey(key);
    $('login').close();
    start();
  });
  $('login').addEventListener('cancel', (e) => e.preventDefault());  // the page needs a key
  $('signout').addEventListener('click', () => {
    storeKey('');
    state.o = null;
    closeDetail();
    showLogin('');
  });
  $('filter').addEventListener('input', (e) => {
    state.filter = e.target.value.trim();
    renderAll();
  });
  $('detail-close').addEventListener('click', closeDetail);
  bindSorting($('agents'), renderAll);
  start();
}

init();
