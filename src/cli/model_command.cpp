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
  CLI::App* demo = model->add_subcommand(
      "make-demo", "Write a demo GGUF model: Llama architecture, Llama 3 tokenizer, seeded random weights "
                   "(its text is meaningless)");
  demo->add_option("--size", args->size, "tiny (tests), small (default serve model), bench (~370M, F16), tiny-swa (Gemma 3 shape, sliding window), tiny-mamba (recurrent)")
      ->check(CLI::IsMember(DemoModelSizes()))
      ->capture_default_str();
  demo->add_option("--out", args->out, "output path")->required();
  demo->add_option("--seed", args->seed, "weights seed; the same seed gives a byte-identical file")
      ->capture_default_str();
}

int RunMakeDemo(const MakeDemoArgs& args) {
  auto spec = DemoModelSpecFor(args.size);
  if (!spec.ok()) {
    std::cerr << "kvault: " << spec.status().message() << "\n";
    return kExitUsage;
  }
  auto vocab = FindSharedFile("ggml-vocab-llama-bpe.gguf");
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
  std::cout << "wrote demo model '" << args.size << "' (seed " << args.seed << ") to " << args.out << " in "
            << secs << " s\n";
  return kExitOk;
}

}  // namespace kvault
