// HTTP hooks: what every request goes through around its route, on cpp-httplib's worker threads:
//   - a request id on every response: the client's X-Request-Id (made safe) or a new one, also as
//     `request-id` (Anthropic's header) for Anthropic-flavoured requests (IsAnthropicRequest);
//   - CORS: allowed origins get their headers, and preflights (OPTIONS) are answered here, before
//     any authentication;
//   - the per-endpoint HTTP metrics, and a log line for each refusal (status >= 400 but 429);
//   - error envelopes for what no route answered itself (no route, a body over the limit) and for
//     exceptions a handler threw.
// Installed once by HttpServer before it listens; the hooks are then called concurrently, and
// touch only `metrics` (thread-safe) and their own copies of the options.
#pragma once

#include <string>
#include <vector>

#include "server/metrics.h"

namespace httplib {
class Server;
}

namespace kvault {

// `cors_origins`: browser origins allowed to call the API ("*": any; empty: none).
void InstallHttpHooks(httplib::Server& http, Metrics* metrics, std::vector<std::string> cors_origins);

}  // namespace kvault
