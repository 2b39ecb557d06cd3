// kvault: an LLM inference server that keeps every agent's KV cache.
#include <iostream>

#include "cli/commands.h"

#ifndef KVAULT_VERSION
#define KVAULT_VERSION "dev"
#endif

int main(int argc, char** argv) {
  CLI::App app{"kvault: an inference server that keeps every agent's KV cache"};
  app.set_version_flag("--version", std::string("kvault ") + KVAULT_VERSION);
  app.require_subcommand(1);
  kvault::ServeArgs serve;
  kvault::MakeDemoArgs demo;
  kvault::CacheArgs cache;
  kvault::AddServeCommand(app, &serve);
  kvault::AddModelCommand(app, &demo);
  kvault::AddCacheCommand(app, &cache);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kvault::kExitOk : kvault::kExitUsage;
  }
  if (app.got_subcommand("serve") && serve.print_config) {
    std::cout << kvault::EffectiveConfig(*app.get_subcommand("serve"));
    return kvault::kExitOk;
  }
  if (app.got_subcommand("serve")) return kvault::RunServe(serve);
  if (app.got_subcommand("model")) return kvault::RunMakeDemo(demo);
  if (app.got_subcommand("cache")) return kvault::RunCache(cache);
  return kvault::kExitUsage;
}
