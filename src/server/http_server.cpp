#include "server/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>
#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/openai_chat.h"

namespace kvault {

using json = nlohmann::json;

namespace {

constexpr const char* kJson = "application/json";

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.http_status;
  if (e.http_status == 429 || e.http_status == 503) res.set_header("Retry-After", "1");
  res.set_content(OpenAiErrorBody(e), kJson);
}

// The request's next event. nullopt once the client has gone away (checked at least every
// 100 ms), after cancelling the request so the engine frees its cells at its next step.
std::optional<GenerationEvent> NextEvent(RequestHandle& h, const httplib::Request& req) {
  while (true) {
    auto ev = h.events().PopFor(std::chrono::milliseconds(100));
    if (req.is_connection_closed()) {
      h.Cancel();
      return std::nullopt;
    }
    if (ev) return ev;
    if (h.events().closed()) {  // cannot happen: the engine always ends with kDone or kError
      GenerationEvent err;
      err.kind = GenerationEvent::Kind::kError;
      err.status = Status::Internal("the engine ended the request without an answer");
      return err;
    }
  }
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

HttpServer::HttpServer(ServerOptions options, Engine* engine)
    : options_(std::move(options)), engine_(engine), http_(std::make_unique<httplib::Server>()) {
  RegisterRoutes();
}

HttpServer::~HttpServer() = default;

Status HttpServer::Bind() {
  // cpp-httplib's default sets SO_REUSEPORT, which would let a second server silently share a
  // port that is in use. Only SO_REUSEADDR (fast restart after TIME_WAIT).
  http_->set_socket_options([](socket_t sock) {
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  });
  if (options_.port == 0) {
    bound_port_ = http_->bind_to_any_port(options_.host);
    if (bound_port_ <= 0) return Status::Unavailable("cannot listen on " + options_.host);
  } else {
    if (!http_->bind_to_port(options_.host, options_.port)) {
      return Status::Unavailable("cannot listen on " + options_.host + ":" + std::to_string(options_.port) +
                                 " (address in use, or not available on this machine)");
    }
    bound_port_ = options_.port;
  }
  return Status::Ok();
}

void HttpServer::Run() { http_->listen_after_bind(); }

void HttpServer::WaitUntilReady() { http_->wait_until_ready(); }

void HttpServer::Stop() { http_->stop(); }

void HttpServer::RegisterRoutes() {
  const size_t threads = static_cast<size_t>(std::max(1, options_.http_threads));
  const size_t max_threads = std::max(threads, static_cast<size_t>(std::max(0, options_.http_threads_max)));
  http_->new_task_queue = [threads, max_threads] { return new httplib::ThreadPool(threads, max_threads); };
  http_->set_payload_max_length(options_.max_body_bytes);

  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      SendError(res, {404, "not_found_error", "no route for " + req.method + " " + req.path});
    } else if (res.status == 413) {
      SendError(res, {413, "request_too_large", "the request body is too large"});
    } else if (res.body.empty()) {
      SendError(res, {res.status, res.status >= 500 ? "api_error" : "invalid_request_error",
                      httplib::status_message(res.status)});
    }
  });
  http_->set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("http: {} {} failed: {}", req.method, req.path, what);
    SendError(res, {500, "api_error", "internal server error"});
  });

  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    Engine* engine = engine_.load();
    if (!engine) {
      res.status = 503;
      res.set_content(R"({"status":"loading"})", kJson);
      return;
    }
    const EngineStats st = engine->stats();
    json body = {{"status", "ok"},
                 {"model", engine->info().id},
                 {"queue_depth", st.waiting},
                 {"running", st.running},
                 {"pool",
                  {{"utilization", st.pool_utilization},
                   {"blocks_total", st.pool_blocks_total},
                   {"blocks_used", st.pool_blocks_used},
                   {"blocks_reserved", st.pool_blocks_reserved},
                   {"block_tokens", engine->info().block_tokens},
                   {"idle_sequences", st.idle_resident},
                   {"evictions", st.evictions}}},
                 {"engine",
                  {{"steps", st.steps},
                   {"decode_only_steps", st.decode_only_steps},
                   {"decode_only_tokens", st.decode_only_tokens},
                   {"decode_only_seconds", st.decode_only_seconds},
                   {"prompt_tokens_computed", st.prompt_tokens_computed},
                   {"prompt_tokens_cached", st.prompt_tokens_cached},
                   {"tokens_generated", st.tokens_generated},
                   {"busy_seconds", st.busy_seconds},
                   {"restored_tokens_ram", st.restored_tokens_ram},
                   {"restored_tokens_disk", st.restored_tokens_disk},
                   {"blocks_saved", st.blocks_saved},
                   {"save_seconds", st.save_seconds},
                   {"restore_seconds", st.restore_seconds}}}};
    const KvStoreStats ks = engine->store_stats();
    body["kv_store"] = {{"persistent", ks.persistent},
                        {"fingerprint", engine->info().fingerprint},
                        {"ram_blocks", ks.ram_blocks},
                        {"ram_bytes", ks.ram_bytes},
                        {"disk_blocks", ks.disk.blocks},
                        {"disk_bytes", ks.disk.bytes},
                        {"pending_writes", ks.pending_writes},
                        {"disk_hits", ks.disk_hits},
                        {"misses", ks.misses},
                        {"bytes_written", ks.disk.write_bytes},
                        {"bytes_read", ks.disk.read_bytes},
                        {"write_errors", ks.disk.write_errors},
                        {"quarantined", ks.disk.quarantined},
                        {"gc_deleted", ks.disk.gc_deleted}};
    res.set_content(body.dump(), kJson);
  });

  http_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    Engine* engine = engine_.load();
    if (!engine) return SendError(res, ApiErrorFromStatus(Status::Unavailable("the model is loading")));
    const ModelInfo& m = engine->info();
    json model = {{"id", m.id},
                  {"object", "model"},
                  {"created", 0},
                  {"owned_by", "kvault"},
                  {"meta",
                   {{"description", m.description},
                    {"n_ctx", m.ctx_size},
                    {"pool_tokens", m.pool_tokens},
                    {"pool_bytes", m.pool_bytes},
                    {"cache_type", m.cache_type},
                    {"n_ctx_train", m.n_ctx_train},
                    {"n_params", m.n_params},
                    {"size_bytes", m.size_bytes}}}};
    json body = {{"object", "list"}, {"data", json::array({model})}};
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
  });

  http_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Engine* engine = engine_.load();
    if (!engine) return SendError(res, ApiErrorFromStatus(Status::Unavailable("the model is loading")));
    auto parsed = ParseChatCompletionRequest(req.body);
    if (!parsed.ok()) return SendError(res, ApiErrorFromStatus(parsed.status()));

    const bool stream = parsed->generate.stream;
    const bool include_usage = parsed->include_usage;
    auto handle = engine->Submit(std::move(parsed->generate));
    auto result = std::make_shared<ChatCompletionResult>();
    result->id = NewChatCompletionId();
    result->model = engine->info().id;
    result->created = UnixNow();

    // Wait for the first event: an error (bad prompt, queue full) is still a plain HTTP error.
    std::optional<GenerationEvent> first = NextEvent(*handle, req);
    if (!first) return;
    if (first->kind == GenerationEvent::Kind::kError) return SendError(res, ApiErrorFromStatus(first->status));
    auto apply_done = [result](const GenerationEvent& ev) {
      result->finish = ev.finish;
      result->prompt_tokens = ev.prompt_tokens;
      result->completion_tokens = ev.completion_tokens;
      result->cached_tokens = ev.cached_tokens;
      result->cached_resident = ev.cached_resident;
      result->cached_ram = ev.cached_ram;
      result->cached_disk = ev.cached_disk;
      result->queue_ms = ev.queue_ms;
      result->ttft_ms = ev.ttft_ms;
      result->total_ms = ev.total_ms;
    };

    if (stream) {
      res.set_header("Cache-Control", "no-cache");
      auto pending = std::make_shared<std::optional<GenerationEvent>>(std::move(first));
      auto started = std::make_shared<bool>(false);
      res.set_chunked_content_provider(
          "text/event-stream",
          [handle, result, pending, started, include_usage, apply_done](size_t, httplib::DataSink& sink) {
            auto send = [&](const std::string& s) {
              if (!sink.write(s.data(), s.size())) {
                handle->Cancel();  // the client went away
                return false;
              }
              return true;
            };
            if (!*started) {
              *started = true;
              if (!send(RenderChatCompletionChunk(*result, ChunkKind::kRole, "", include_usage))) return false;
            }
            std::optional<GenerationEvent> ev = std::move(*pending);
            pending->reset();
            if (!ev) ev = handle->events().PopFor(std::chrono::milliseconds(100));
            if (!ev) return sink.is_writable() ? true : (handle->Cancel(), false);
            if (ev->kind == GenerationEvent::Kind::kText) {
              return send(RenderChatCompletionChunk(*result, ChunkKind::kText, ev->text, include_usage));
            }
            if (ev->kind == GenerationEvent::Kind::kError) {  // after the stream started: an error event
              const std::string err = "data: " + OpenAiErrorBody(ApiErrorFromStatus(ev->status)) + "\n\n";
              send(err);
              sink.done();
              return true;
            }
            apply_done(*ev);
            if (!send(RenderChatCompletionChunk(*result, ChunkKind::kFinish, "", include_usage))) return false;
            if (include_usage && !send(RenderChatCompletionChunk(*result, ChunkKind::kUsage, "", true))) return false;
            if (!send(kSseDone)) return false;
            sink.done();
            return true;
          },
          // Called when the response ends; httplib stops calling the provider once the client is
          // gone, so this is where a vanished client's request gets cancelled (a no-op if done).
          [handle](bool) { handle->Cancel(); });
      return;
    }

    for (std::optional<GenerationEvent> ev = std::move(first);; ev = NextEvent(*handle, req)) {
      if (!ev) return;  // the client went away
      if (ev->kind == GenerationEvent::Kind::kText) {
        result->text += ev->text;
      } else if (ev->kind == GenerationEvent::Kind::kError) {
        return SendError(res, ApiErrorFromStatus(ev->status));
      } else {
        apply_done(*ev);
        break;
      }
    }
    ChatCompletionResult& result_ref = *result;
    res.set_header("X-Cache-Tokens", std::to_string(result_ref.cached_tokens));
    res.set_content(RenderChatCompletion(result_ref), kJson);
  });
}

}  // namespace kvault
