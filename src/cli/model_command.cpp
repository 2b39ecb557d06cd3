#include <spdlog/spdlog.h>

#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "core/paths.h"
#include "model/demo_model.h"

namespace kvault {

void AddModelCommand(CLI::App& app, MakeDemoArgs* args) {
  CLI::App* model = app.add_subcommand("model", "Model utilities");
  model->require_subcommand(1);
  CLI::App* demo =
      model->add_subcommand("make-demo",
                            "Write a demo GGUF model: a real architecture, tokenizer and chat template, seeded random "
                            "weights (its text is meaningless)");
  demo->add_option("--size", args->size,
                   "tiny (tests), small (default serve model), bench (~370M, F16), 8b (Llama 3 8B's shape, F16, ~15 "
                   "GB: GPUs), tiny-swa (Gemma 3 shape, sliding window), tiny-mamba (recurrent)")
      ->check(CLI::IsMember(DemoModelSizes()))
      ->capture_default_str();
  demo->add_option("--out", args->out, "output path")->required();
  demo->add_option("--seed", args->seed, "weights seed; the same seed gives a byte-identical file")
      ->capture_default_str();
  demo->add_option("--template", args->chat_template,
                   "chat template and tokenizer: llama3 (Llama 3.1) or qwen3 (Qwen3, with a thinking switch); "
                   "default: small qwen3, the others llama3")
      ->check(CLI::IsMember(DemoChatTemplates()));
  demo->add_option("--end-ramp", args->end_ramp,
                   "added to the end-of-turn logit per generated token, so that answers end within a few dozen "
                   "tokens (0 = off); default: small 0.25, the others 0")
      ->check(CLI::Range(0.0f, 100.0f));
}

int RunMakeDemo(const MakeDemoArgs& args) {
  auto spec = DemoModelSpecFor(args.size);
  if (!spec.ok()) {
    std::cerr << "kvault: " << spec.status().message() << "\n";
    return kExitUsage;
  }
  if (!args.chat_template.empty()) spec->chat_template = args.chat_template;
  if (args.end_ramp >= 0.0f) spec->end_ramp = args.end_ramp;
  auto vocab = FindSharedFile(DemoVocabFile(spec->chat_template));
  if (!vocab.ok()) {
    std::cerr << "kvault: " << vocab.status().message() << "\n";
    return kExitFailure;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Status s = WriteDemoModel(*spec, *vocab, args.out, args.seed);
  if (!s.ok()) {
    std::cerr << "kvault: " << s.message() << "\n";
    return kExitFailure;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "wrote demo model '" << args.size << "' (seed " << args.seed << ") to " << args.out << " in " << secs
            << " s\n";
  return kExitOk;
}

}  // namespace kvault
