// Small DOM and formatting helpers shared by the dashboard's views. Everything is built with
// createElement and textContent (no innerHTML), so agent ids and tenants are never markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function pct(share) {
  if (share === null || share === undefined) return '–';
  return `${Math.round(share * 100)} %`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toLocaleString('en-US', { maximumFractionDigits: i ? 1 : 0 })} ${units[i]}`;
}

export function ms(v) {
  if (v === null || v === undefined) return '–';
  return v >= 1000 ? `${num(v / 1000, 2)} s` : `${num(v, 0)} ms`;
}

export function ago(unixMs, nowMs) {
  if (!unixMs) return '–';
  const s = Math.max(0, Math.round((nowMs - unixMs) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// A horizontal bar of segments [{value, cls, label}]; widths are shares of `total` (default: their
// sum). data-* attributes carry the values, for tests and for people reading the DOM.
export function bar(segments, { total, label, className = 'bar' } = {}) {
  const sum = segments.reduce((a, s) => a + s.value, 0);
  const whole = total ?? sum;
  const node = el('div', { class: className, role: 'img', 'aria-label': label });
  for (const s of segments) {
    if (s.key) node.dataset[s.key] = String(s.value);
    if (!whole || s.value <= 0) continue;
    const seg = el('span', { class: `seg ${s.cls}`, title: `${s.label}: ${num(s.value)}` });
    seg.style.width = `${(100 * s.value) / whole}%`;
    node.append(seg);
  }
  return node;
}

// A line of the last values of a series, as a small SVG (no axes).
export function sparkline(values, { width = 120, height = 28 } = {}) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('aria-hidden', 'true');
  const max = Math.max(1e-9, ...values);
  if (values.length >= 2) {
    const step = width / (values.length - 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.append(line);
  }
  return svg;
}
