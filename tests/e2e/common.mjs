// Fixtures and small helpers shared by the e2e test files.

// A fixed system prompt of more than 400 words, so a prompt spans several 64-token KV blocks and a
// follow-up turn can restore most of it from the cache. The model has random weights: the words
// are filler, never read for meaning.
export const LONG_SYSTEM = [
  'You are the night-shift assistant of a small harbour warehouse that stores crates of tea,',
  'copper wire, ceramic tiles, bicycle parts, paper, rope, canned fish and winter coats. Every',
  'crate has a label with a four-letter aisle code, a shelf number between one and forty, and',
  'the date it arrived. When a worker asks where a crate is, answer with the aisle code first,',
  'then the shelf number, then the arrival date, and nothing else unless they ask for more.',
  'The warehouse opens at six in the morning and closes at ten in the evening; deliveries that',
  'arrive after closing wait in the yard under the blue canopy until the first shift starts.',
  'Forklifts may only be driven by workers who carry a green badge, and never in aisles whose',
  'code starts with the letter Q, because those aisles are too narrow for the big machines.',
  'Fragile goods such as ceramic tiles and glass lamps go on the lowest three shelves, heavy',
  'goods such as copper wire go on the middle shelves, and light goods such as paper and coats',
  'may go anywhere above shelf twenty. Crates that smell of fish are kept apart from the tea.',
  'If two crates carry the same label, report both and ask the worker which one they need.',
  'If a crate cannot be found, say so plainly and suggest checking the yard, then the returns',
  'corner near the east door, then the office where damaged labels are reprinted every Monday.',
  'Temperatures in the cold room must stay between two and six degrees; if a worker reports a',
  'reading outside that range, tell them to call the duty manager at once and to write the time',
  'and the reading on the clipboard that hangs beside the cold room door. Do not guess numbers.',
  'Inventory counts happen on the last Friday of every month. During a count, no crate may be',
  'moved between aisles unless the supervisor signs the movement sheet, and every movement is',
  'recorded with the old position, the new position, the time and the initials of the worker.',
  'Visitors must wear a yellow vest and stay behind the painted line near the loading bays.',
  'Lost property goes into the grey box in the canteen; after thirty days it is given away.',
  'The canteen serves soup at noon and bread all day; the coffee machine is cleaned on Tuesdays.',
  'When the fire alarm rings, everyone leaves through the nearest door and gathers by the flag',
  'pole in the car park, where the shift leader counts heads against the signed attendance list.',
  'Keep answers short, polite and factual. Use plain words. Never invent a crate, a shelf or a',
  'date that is not in the records, and never promise a delivery time that nobody has confirmed.',
  'At the end of every shift, summarise the questions you were asked and the crates you located,',
  'so that the next assistant knows what happened and which workers are still waiting for news.',
  'Remember that the harbour tides change the delivery schedule twice a month, that the north',
  'gate sticks in wet weather, and that the old scale in aisle BRIX reads two kilograms heavy.',
].join(' ');

export const WEATHER_TOOL_DESCRIPTION = 'Get the weather for a city';
// The tool's parameters. `maxLength` bounds the city: a random-weights model under a JSON grammar
// almost never chooses the closing quote of an unbounded string, so without it the arguments run
// on until max_tokens cuts them off (see WEATHER_SCHEMA_UNBOUNDED, used to test exactly that).
export const WEATHER_SCHEMA = {
  type: 'object',
  properties: { city: { type: 'string', maxLength: 12 } },
  required: ['city'],
};
export const WEATHER_SCHEMA_UNBOUNDED = {
  type: 'object',
  properties: { city: { type: 'string' } },
  required: ['city'],
};

export function wordCount(text) {
  return text.split(/\s+/).filter(Boolean).length;
}

function isPrintableAscii(s) {
  return /^[\x21-\x7e][\x20-\x7e]*[\x21-\x7e]$/.test(s);
}

function hasNoSurrogates(s) {
  return !/[\ud800-\udfff]/.test(s);
}

/**
 * A stop sequence taken from the greedy output `text`: a substring of length 3-5 starting at an
 * index ≥ 5 whose first occurrence in `text` is at that index. Printable ASCII without leading or
 * trailing spaces is preferred; otherwise any substring without surrogate halves and without
 * leading/trailing whitespace. Returns null when `text` is too short or has no such substring.
 */
export function pickStopSequence(text) {
  const candidates = [];
  for (let i = 5; i < text.length; i++) {
    for (const len of [4, 5, 3]) {
      if (i + len > text.length) continue;
      const s = text.slice(i, i + len);
      if (text.indexOf(s) !== i) continue;
      if (!hasNoSurrogates(s) || s.trim() !== s) continue;
      candidates.push({ s, ascii: isPrintableAscii(s) });
    }
  }
  const ascii = candidates.find((c) => c.ascii);
  if (ascii) return ascii.s;
  return candidates.length ? candidates[0].s : null;
}

/** Collects an async iterable into an array. */
export async function collect(iterable) {
  const out = [];
  for await (const x of iterable) out.push(x);
  return out;
}

/** Polls `fn` until it resolves without throwing (or `timeoutMs` passes, then rethrows). */
export async function eventually(fn, { timeoutMs = 10_000, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }
}
