// The agents table: one row per agent the key may see, sortable by any column (click its header;
// again to reverse), filtered by id or tenant, with a bar of where the agent's KV blocks are
// (pool, RAM, disk, only in Redis, not stored) and, for admin keys, Evict and Forget buttons behind confirm().

import { ago, bar, el, num, pct } from './format.js';

const sort = { key: 'last_use_ms', dir: -1 };

function whereBar(a) {
  const p = a.placement;
  const segs = [
    { value: p.pool, cls: 'c-pool', key: 'pool', label: 'blocks in the pool' },
    { value: p.ram, cls: 'c-ram', key: 'ram', label: 'blocks in RAM' },
    { value: p.disk, cls: 'c-disk', key: 'disk', label: 'blocks on disk' },
    { value: p.remote || 0, cls: 'c-remote', key: 'remote', label: 'blocks only in Redis' },
    { value: p.none, cls: 'c-none', key: 'none', label: 'blocks not stored here' },
  ];
  const text = `pool ${p.pool} · RAM ${p.ram} · disk ${p.disk}${p.remote ? ` · Redis ${p.remote}` : ''}${p.none ? ` · not stored ${p.none}` : ''} of ${a.blocks} blocks`;
  return el('div', { class: 'where' },
    bar(segs, { total: a.blocks, label: text, className: 'bar tierbar' }),
    el('span', { class: 'where-l muted', text }));
}

function sortValue(a, key) {
  if (key === 'cached_share') return a.last_turn_cached_share ?? -1;
  if (key === 'where') return a.blocks ? (a.placement.pool * 8 + a.placement.ram * 4 + a.placement.disk * 2 + (a.placement.remote || 0)) / a.blocks : 0;
  return a[key];
}

function compare(a, b) {
  const va = sortValue(a, sort.key);
  const vb = sortValue(b, sort.key);
  if (va === vb) return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  return (va < vb ? -1 : 1) * sort.dir;
}

function matches(a, filter) {
  if (!filter) return true;
  const f = filter.toLowerCase();
  return a.id.toLowerCase().includes(f) || (a.tenant || '').toLowerCase().includes(f);
}

// `o`: the overview; `filter`: the filter text; `on`: {open(agent), evict(agent), forget(agent)}.
export function renderAgents(table, o, filter, on) {
  const admin = o.viewer.can_manage;
  table.classList.toggle('show-tenant', o.viewer.role === 'admin');
  table.classList.toggle('show-actions', admin);
  for (const th of table.tHead.rows[0].cells) {
    const key = th.dataset.key;
    if (!key) continue;
    th.setAttribute('aria-sort', key === sort.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
  const rows = o.agents.filter((a) => matches(a, filter)).sort(compare);
  const body = el('tbody');
  for (const a of rows) {
    const actions = admin
      ? el('td', { class: 'col-actions' },
        el('button', { type: 'button', class: 'btn btn-small act-evict', text: 'Evict', title: 'out of the pool and RAM; kept on disk', onclick: () => on.evict(a) }),
        el('button', { type: 'button', class: 'btn btn-small btn-danger act-forget', text: 'Forget', title: 'delete its record and the blocks only it uses', onclick: () => on.forget(a) }))
      : el('td', { class: 'col-actions' });
    const tr = el('tr', { 'data-agent': a.id, 'data-tenant': a.tenant, class: a.running ? 'running' : '' },
      el('th', { scope: 'row' }, el('button', { type: 'button', class: 'link', text: a.id, title: 'show its turns', onclick: () => on.open(a) }),
        a.running ? el('span', { class: 'chip chip-loaded', text: 'running' }) : null),
      el('td', { class: 'col-tenant', text: a.tenant || '(none)' }),
      el('td', { class: 'num', text: num(a.turns) }),
      el('td', { class: 'num', text: num(a.tokens) }),
      el('td', { text: ago(a.last_use_ms, o.unix_ms), title: new Date(a.last_use_ms).toISOString() }),
      el('td', { class: 'num cached', text: pct(a.last_turn_cached_share) }),
      el('td', {}, whereBar(a)),
      actions);
    body.append(tr);
  }
  table.tBodies[0].replaceWith(body);
  return rows.length;
}

// Header clicks change the order; `rerender` draws the table again.
export function bindSorting(table, rerender) {
  for (const th of table.tHead.rows[0].cells) {
    const key = th.dataset.key;
    if (!key) continue;
    th.tabIndex = 0;
    const go = () => {
      sort.dir = sort.key === key ? -sort.dir : key === 'id' || key === 'tenant' ? 1 : -1;
      sort.key = key;
      rerender();
    };
    th.addEventListener('click', go);
    th.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        go();
      }
    });
  }
}

export { whereBar };
