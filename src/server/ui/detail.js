// One agent's detail: where its KV is, and its recent turns (prompt tokens, how many came from
// the pool, RAM or disk, how many were computed, tokens generated, time to first token) as a
// chart and a table — from GET /admin/agents/{id}/turns.

import { whereBar } from './agents.js';
import { el, ms, num, pct } from './format.js';

const NS = 'http://www.w3.org/2000/svg';

// One stacked column per turn: cached from pool / RAM / disk, then computed.
function chart(turns) {
  const width = 600;
  const height = 120;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'turn-chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'prompt tokens of each turn: cached by tier, and computed');
  const max = Math.max(1, ...turns.map((t) => t.prompt_tokens));
  const slot = width / Math.max(turns.length, 8);
  turns.forEach((t, i) => {
    let y = height;
    const parts = [['c-pool', t.cached.pool], ['c-ram', t.cached.ram], ['c-disk', t.cached.disk], ['c-remote', t.cached.remote || 0], ['c-computed', t.computed_tokens]];
    for (const [cls, v] of parts) {
      if (v <= 0) continue;
      const h = (v / max) * (height - 4);
      y -= h;
      const r = document.createElementNS(NS, 'rect');
      r.setAttribute('x', (i * slot + slot * 0.15).toFixed(1));
      r.setAttribute('y', y.toFixed(1));
      r.setAttribute('width', (slot * 0.7).toFixed(1));
      r.setAttribute('height', h.toFixed(1));
      r.setAttribute('class', cls);
      const title = document.createElementNS(NS, 'title');
      title.textContent = `turn ${i + 1}: ${num(v)} tokens`;
      r.append(title);
      svg.append(r);
    }
  });
  return svg;
}

function turnsTable(turns) {
  const body = el('tbody');
  turns.forEach((t, i) => {
    body.append(el('tr', {},
      el('td', { class: 'num', text: String(i + 1) }),
      el('td', { text: new Date(t.unix_ms).toLocaleTimeString() }),
      el('td', { class: 'num', text: num(t.prompt_tokens) }),
      el('td', { class: 'num cached', text: num(t.cached_tokens) }),
      el('td', { class: 'num', text: `${num(t.cached.pool)} / ${num(t.cached.ram)} / ${num(t.cached.disk)} / ${num(t.cached.remote || 0)}` }),
      el('td', { class: 'num computed', text: num(t.computed_tokens) }),
      el('td', { class: 'num', text: num(t.completion_tokens) }),
      el('td', { class: 'num', text: ms(t.ttft_ms) })));
  });
  return el('div', { class: 'table-wrap' }, el('table', { class: 'turns' },
    el('thead', {}, el('tr', {},
      el('th', { class: 'num', text: '#' }), el('th', { text: 'Ended' }), el('th', { class: 'num', text: 'Prompt' }),
      el('th', { class: 'num', text: 'Cached' }), el('th', { class: 'num', text: 'Pool / RAM / disk / Redis' }),
      el('th', { class: 'num', text: 'Computed' }), el('th', { class: 'num', text: 'Generated' }),
      el('th', { class: 'num', text: 'TTFT' }))),
    body));
}

// `d`: the turns route's answer.
export function renderDetail(root, d) {
  const a = d.agent;
  const turns = d.turns;
  root.replaceChildren(
    el('p', { class: 'detail-id' }, el('strong', { text: a.id }), a.tenant ? el('span', { class: 'muted', text: ` tenant ${a.tenant}` }) : null,
      ` · ${num(a.turns)} turns · ${num(a.tokens)} tokens · last turn ${pct(a.last_turn_cached_share)} from cache`),
    whereBar(a),
    turns.length
      ? el('div', {}, chart(turns), turnsTable(turns),
        el('p', { class: 'muted', text: `The last ${d.turns_kept} turns are kept, in memory (a restart starts the history again).` }))
      : el('p', { class: 'muted empty', text: 'No turns recorded since the server started.' }));
}
