// The dashboard's calls to kvault: the key (kept in this tab's sessionStorage, sent only in the
// Authorization header, never in a URL), JSON requests, and the live overview stream
// (GET /admin/events, read with fetch() and a ReadableStream so that the key can go in a header,
// which EventSource cannot do).

const KEY_ITEM = 'kvault.dashboard.key';

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM) || '';
}

export function storeKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// The error message in kvault's (OpenAI-shaped) error envelope, else the status text.
async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON
  }
  return new HttpError(res.status, message);
}

export async function call(method, path) {
  const res = await fetch(path, { method, headers: headers(), cache: 'no-store' });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

export const agentPath = (agent, suffix = '') =>
  `/admin/agents/${encodeURIComponent(agent.id)}${suffix}?tenant=${encodeURIComponent(agent.tenant)}`;

// Reads GET /admin/events until it ends or `signal` aborts, calling onOverview(json) for each
// event. Throws HttpError when the server refuses the stream.
export async function streamOverview(onOverview, signal) {
  const res = await fetch('/admin/events', { headers: headers(), cache: 'no-store', signal });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (event === 'overview' && data.length) onOverview(JSON.parse(data.join('\n')));
    }
  }
}
