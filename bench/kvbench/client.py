"""The HTTP client every suite uses, kvault and llama-server alike: JSON GET/POST, a chat
completion, a streamed chat completion timed to its first token, and waiting for kvault's disk
writes to settle."""
import json
import time
import urllib.request


def post_json(port, path, body, timeout=600, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = json.loads(r.read())
    return data, time.perf_counter() - t0


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def chat(port, content, max_tokens, extra=None, headers=None, timeout=600):
    """`content`: the user's message, or a whole list of messages."""
    messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0}
    body.update(extra or {})
    return post_json(port, "/v1/chat/completions", body, headers=headers, timeout=timeout)


def chat_stream(port, messages, max_tokens, headers=None, timeout=600, extra=None):
    """A streamed chat completion (OpenAI server-sent events). Time to first token: until the first
    chunk that carries generated text, a tool call or a finish reason (a role-only opening chunk does
    not count: a server may send it before the prompt is processed). Returns a dict with ttft_s,
    total_s, the answer's text, prompt / completion tokens and the prompt tokens reused from a cache
    (usage.prompt_tokens_details.cached_tokens, or llama-server's timings.cache_n), and llama-server's
    own timings (empty for kvault)."""
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **(extra or {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    t0 = time.perf_counter()
    ttft, text, usage, timings = None, [], {}, {}
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            for ch in ev.get("choices") or []:
                delta = ch.get("delta") or {}
                if ttft is None and (delta.get("content") or delta.get("tool_calls") or ch.get("finish_reason")):
                    ttft = time.perf_counter() - t0
                if delta.get("content"):
                    text.append(delta["content"])
            usage = ev.get("usage") or usage
            timings = ev.get("timings") or timings
    total = time.perf_counter() - t0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None:
        cached = timings.get("cache_n", 0)
    return {"ttft_s": ttft if ttft is not None else total, "total_s": total, "text": "".join(text),
            "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
            "cached_tokens": cached or 0, "timings": timings}


def wait_store_idle(port, timeout=60):
    """Until kvault's KV store has no pending disk writes (nor remote-tier writes, where it has
    one); returns /health."""
    deadline = time.time() + timeout
    while True:
        h = get_json(port, "/health")
        ks = h.get("kv_store", {})
        if (ks.get("pending_writes", 0) == 0 and (ks.get("remote") or {}).get("queued_writes", 0) == 0) \
                or time.time() > deadline:
            return h
        time.sleep(0.2)


def llama_cached_fraction(r):
    """The share of the prompt a llama-server answer says it took from its cache (its timings:
    cache_n tokens reused, prompt_n computed)."""
    t = r.get("timings") or {}
    return t.get("cache_n", 0) / max(1, t.get("cache_n", 0) + t.get("prompt_n", 0))
