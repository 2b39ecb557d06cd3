#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>
#include <thread>

#include "common.h"
#include "core/utf8.h"
#include "llama.h"
#include "model/model_file.h"

namespace kvault {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "stop";
}

// Everything llama.cpp: created, used and destroyed on the engine thread only.
class Engine::Impl {
 public:
  ~Impl() {
    if (sampler_) llama_sampler_free(sampler_);
    if (ctx_) llama_free(ctx_);
    if (model_) llama_model_free(model_);
  }

  Status Load(const EngineOptions& opt, ModelInfo* info) {
    Status s = CheckModelFile(opt.model_path);
    if (!s.ok()) return s;
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    model_ = llama_model_load_from_file(opt.model_path.c_str(), mp);
    if (!model_) return Status::Corruption("llama.cpp could not load model " + opt.model_path.string());
    vocab_ = llama_model_get_vocab(model_);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = opt.n_ctx;
    cp.n_batch = opt.n_batch;
    cp.n_ubatch = opt.n_batch;
    cp.n_seq_max = 1;
    const int32_t threads =
        opt.n_threads > 0 ? opt.n_threads : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.no_perf = true;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_) return Status::Internal("llama.cpp could not create a context (n_ctx=" + std::to_string(opt.n_ctx) + ")");

    try {
      templates_ = common_chat_templates_init(model_, "");
    } catch (const std::exception& e) {
      return Status::Corruption(std::string("model chat template is invalid: ") + e.what());
    }
    sampler_ = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(sampler_, llama_sampler_init_greedy());

    char desc[256] = {};
    llama_model_desc(model_, desc, sizeof(desc));
    info->description = desc;
    info->n_ctx = llama_n_ctx(ctx_);
    info->n_ctx_train = llama_model_n_ctx_train(model_);
    info->n_params = llama_model_n_params(model_);
    info->size_bytes = llama_model_size(model_);
    return Status::Ok();
  }

  void Process(const Job& job, const EngineOptions& opt) {
    RequestHandle& h = *job.handle;
    GenerationEvent done;
    done.kind = GenerationEvent::Kind::kDone;
    Status s = Generate(job.request, opt, h, &done);
    if (!s.ok()) {
      GenerationEvent err;
      err.kind = GenerationEvent::Kind::kError;
      err.status = s;
      h.events().Push(std::move(err));
    } else {
      h.events().Push(std::move(done));
    }
    h.events().Close();
  }

 private:
  Status Generate(const GenerateRequest& req, const EngineOptions& opt, RequestHandle& h, GenerationEvent* done) {
    common_chat_templates_inputs in;
    in.messages = req.messages;
    in.add_generation_prompt = true;
    in.use_jinja = true;
    std::string prompt;
    try {
      prompt = common_chat_templates_apply(templates_.get(), in).prompt;
    } catch (const std::exception& e) {
      return Status::InvalidArgument(std::string("cannot apply the chat template: ") + e.what());
    }
    std::vector<llama_token> tokens = common_tokenize(vocab_, prompt, /*add_special=*/true, /*parse_special=*/true);
    const auto n_ctx = static_cast<int32_t>(llama_n_ctx(ctx_));
    const auto n_prompt = static_cast<int32_t>(tokens.size());
    if (n_prompt == 0) return Status::InvalidArgument("the prompt is empty");
    if (n_prompt >= n_ctx) {
      return Status::TooLarge("the prompt is " + std::to_string(n_prompt) + " tokens; the context holds " +
                              std::to_string(n_ctx) + " (prompt and completion together)");
    }
    const int32_t max_tokens = req.max_tokens > 0 ? req.max_tokens : opt.default_max_tokens;
    done->prompt_tokens = n_prompt;

    llama_memory_clear(llama_get_memory(ctx_), true);
    llama_sampler_reset(sampler_);
    for (int32_t i = 0; i < n_prompt; i += static_cast<int32_t>(opt.n_batch)) {
      if (h.cancelled()) {
        done->finish = FinishReason::kCancelled;
        return Status::Ok();
      }
      const int32_t n = std::min<int32_t>(static_cast<int32_t>(opt.n_batch), n_prompt - i);
      if (llama_decode(ctx_, llama_batch_get_one(tokens.data() + i, n)) != 0) {
        return Status::Internal("llama_decode failed during prefill");
      }
    }

    std::string pending;  // detokenized bytes not yet sent (an incomplete UTF-8 character)
    int32_t n_gen = 0;
    done->finish = FinishReason::kLength;
    while (true) {
      if (h.cancelled()) {
        done->finish = FinishReason::kCancelled;
        break;
      }
      llama_token tok = llama_sampler_sample(sampler_, ctx_, -1);
      if (llama_vocab_is_eog(vocab_, tok)) {
        done->finish = FinishReason::kStop;
        break;
      }
      ++n_gen;
      pending += common_token_to_piece(ctx_, tok, /*special=*/false);
      const size_t complete = Utf8CompletePrefix(pending);
      if (complete > 0) {
        GenerationEvent ev;
        ev.text = pending.substr(0, complete);
        pending.erase(0, complete);
        h.events().Push(std::move(ev));
      }
      if (n_gen >= max_tokens || n_prompt + n_gen >= n_ctx) break;
      if (llama_decode(ctx_, llama_batch_get_one(&tok, 1)) != 0) {
        return Status::Internal("llama_decode failed during generation");
      }
    }
    if (!pending.empty()) {
      GenerationEvent ev;
      ev.text = std::move(pending);
      h.events().Push(std::move(ev));
    }
    done->completion_tokens = n_gen;
    return Status::Ok();
  }

  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
  const llama_vocab* vocab_ = nullptr;
  llama_sampler* sampler_ = nullptr;
  common_chat_templates_ptr templates_;
};

Engine::Engine(const EngineOptions& options) : options_(options) {
  info_.id = options.model_id.empty() ? options.model_path.stem().string() : options.model_id;
  info_.path = options.model_path.string();
}

Engine::~Engine() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

StatusOr<std::unique_ptr<Engine>> Engine::Start(const EngineOptions& options) {
  std::unique_ptr<Engine> engine(new Engine(options));
  std::promise<Status> ready;
  std::future<Status> loaded = ready.get_future();
  engine->thread_ = std::thread([e = engine.get(), &ready] { e->Run(&ready); });
  Status s = loaded.get();
  if (!s.ok()) {
    engine->queue_.Close();
    engine->thread_.join();
    return s;
  }
  return engine;
}

std::shared_ptr<RequestHandle> Engine::Submit(GenerateRequest request) {
  auto handle = std::make_shared<RequestHandle>();
  if (!queue_.Push(Job{std::move(request), handle})) {
    GenerationEvent err;
    err.kind = GenerationEvent::Kind::kError;
    err.status = Status::Unavailable("the engine is shutting down");
    handle->events().Push(std::move(err));
    handle->events().Close();
  }
  return handle;
}

void Engine::Run(std::promise<Status>* ready) {
  impl_ = std::make_unique<Impl>();
  Status s = impl_->Load(options_, &info_);
  if (!s.ok()) impl_.reset();  // free llama state on this thread
  ready->set_value(s);
  if (!s.ok()) return;
  spdlog::info("engine: model {} loaded ({}, {} params, context {} tokens)", info_.id, info_.description,
               info_.n_params, info_.n_ctx);
  while (auto job = queue_.Pop()) {
    if (queue_.closed()) {  // shutting down: fail what is still queued
      GenerationEvent err;
      err.kind = GenerationEvent::Kind::kError;
      err.status = Status::Unavailable("the engine is shutting down");
      job->handle->events().Push(std::move(err));
      job->handle->events().Close();
      continue;
    }
    impl_->Process(*job, options_);
  }
  impl_.reset();
}

}  // namespace kvault
