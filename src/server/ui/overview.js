// The overview cards: models, pool occupancy, each tier against its limit, throughput, queue,
// time to first token and cache reuse by tier — from one GET /admin/overview object.

import { bar, bytes, el, ms, num, pct, sparkline } from './format.js';

const HISTORY = 120;  // events kept for the sparklines (about two minutes)
const history = { rps: [], tps: [] };

function push(series, v) {
  series.push(v ?? 0);
  if (series.length > HISTORY) series.shift();
}

function card(id, title, ...body) {
  return el('article', { class: 'card', id: `card-${id}` }, el('h3', { text: title }), ...body);
}

function stat(label, value, cls = '') {
  return el('div', { class: `stat ${cls}` }, el('span', { class: 'stat-v', text: value }), el('span', { class: 'stat-l', text: label }));
}

function useBar(used, limit, cls, label) {
  if (!limit) return el('p', { class: 'muted', text: `${bytes(used)} (no limit)` });
  return el('div', {},
    bar([{ value: used, cls, key: 'used', label: 'used' }], { total: limit, label: `${label}: ${bytes(used)} of ${bytes(limit)}` }),
    el('p', { class: 'muted', text: `${bytes(used)} of ${bytes(limit)} (${pct(used / limit)})` }));
}

function modelsCard(o) {
  const list = el('ul', { class: 'models' });
  for (const m of o.models || []) {
    list.append(el('li', {}, el('span', { text: m.name }), ' ', el('span', { class: `chip chip-${m.state}`, text: m.state })));
  }
  return card('models', 'Models', list);
}

function poolCard(o) {
  const p = o.pool;
  if (!p) return card('pool', 'Pool', el('p', { class: 'muted', text: 'no model loaded' }));
  const segs = [
    { value: p.blocks_running, cls: 'c-running', key: 'running', label: 'running' },
    { value: p.blocks_idle, cls: 'c-idle', key: 'idle', label: 'idle (cached)' },
    { value: p.blocks_free, cls: 'c-free', key: 'free', label: 'free' },
  ];
  return card('pool', 'Pool',
    bar(segs, { total: p.blocks_total, label: 'pool blocks: running, idle, free', className: 'bar bar-pool' }),
    el('div', { class: 'stats' },
      stat('running blocks', num(p.blocks_running), 'k-running'),
      stat('idle blocks', num(p.blocks_idle), 'k-idle'),
      stat('free blocks', num(p.blocks_free))),
    el('p', { class: 'muted', text: `${num(p.blocks_total)} blocks of ${p.block_tokens} tokens (${num(p.tokens_total)} tokens); ${p.idle_sequences} idle conversations` }));
}

function tiersCard(o) {
  const t = o.tiers;
  if (!t) return card('tiers', 'Tiers', el('p', { class: 'muted', text: 'no model loaded' }));
  const disk = t.disk && t.disk.bytes !== undefined
    ? useBar(t.disk.bytes, t.disk.limit_bytes, 'c-disk', 'disk')
    : el('p', { class: 'muted', text: `off: ${t.disk ? t.disk.reason : ''}` });
  const remote = t.remote
    ? el('p', {}, el('span', { class: `chip chip-${t.remote.state}`, text: t.remote.state }),
      ` ${num(t.remote.hits)} hits, ${num(t.remote.queued_writes)} queued, ${num(t.remote.dropped_writes)} dropped writes`)
    : el('p', { class: 'muted', text: 'not configured (--remote-cache)' });
  const diskState = t.disk && t.disk.state && t.disk.state !== 'ok' && t.disk.bytes !== undefined
    ? el('p', { class: 'error', text: `disk writes ${t.disk.state}` }) : null;
  return card('tiers', 'KV tiers',
    el('h4', { text: 'RAM' }), useBar(t.ram.bytes, t.ram.limit_bytes, 'c-ram', 'RAM'),
    el('h4', { text: 'Disk' }), disk, diskState,
    el('h4', { text: 'Remote (Redis)' }), remote);
}

function throughputCard(o) {
  push(history.rps, o.rates.requests_per_second);
  push(history.tps, o.rates.tokens_per_second);
  return card('throughput', 'Throughput',
    el('div', { class: 'stats' },
      stat('requests/s', num(o.rates.requests_per_second, 2)),
      stat('tokens/s', o.rates.tokens_per_second === null ? '–' : num(o.rates.tokens_per_second, 1))),
    el('div', { class: 'sparks', title: 'requests/s and tokens/s over the last two minutes' }, sparkline(history.rps), sparkline(history.tps)),
    el('div', { class: 'stats' },
      stat('queued', num(o.queue ? o.queue.waiting : null)),
      stat('running', num(o.queue ? o.queue.running : null)),
      stat('429s since start', num(o.totals.rate_limited))),
    el('p', { class: 'muted', text: `rates over the last ${o.rates.window_seconds} s` }));
}

function latencyCard(o) {
  const r = o.recent;
  return card('latency', 'Time to first token',
    el('div', { class: 'stats' }, stat('p50', ms(r.ttft_p50_ms)), stat('p95', ms(r.ttft_p95_ms))),
    el('p', { class: 'muted', text: `${num(r.requests)} requests in the last ${r.window_seconds < 120 ? `${num(r.window_seconds)} s` : `${num(r.window_seconds / 60)} min`}` }));
}

function reuseBar(r, label) {
  const segs = [
    { value: r.cached.pool, cls: 'c-pool', key: 'pool', label: 'from the pool' },
    { value: r.cached.ram, cls: 'c-ram', key: 'ram', label: 'from RAM' },
    { value: r.cached.disk, cls: 'c-disk', key: 'disk', label: 'from disk' },
    { value: r.cached.remote || 0, cls: 'c-remote', key: 'remote', label: 'from Redis' },
    { value: r.computed_tokens, cls: 'c-computed', key: 'computed', label: 'computed' },
  ];
  return el('div', { class: 'reuse' },
    el('p', { class: 'reuse-l' }, el('span', { text: label }), el('strong', { text: ` ${pct(r.cached_share)} from cache` })),
    bar(segs, { label: `${label}: prompt tokens by where their KV came from` }),
    el('p', { class: 'muted', text: `pool ${num(r.cached.pool)} · RAM ${num(r.cached.ram)} · disk ${num(r.cached.disk)} · Redis ${num(r.cached.remote || 0)} · computed ${num(r.computed_tokens)} tokens` }));
}

function reuseCard(o) {
  return card('reuse', 'Cache reuse by tier', reuseBar(o.recent, 'Last minutes'), reuseBar(o.totals, 'Since start'));
}

export function renderOverview(root, o) {
  root.replaceChildren(poolCard(o), tiersCard(o), throughputCard(o), latencyCard(o), reuseCard(o), modelsCard(o));
}
