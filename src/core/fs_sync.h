// Durable directories. A directory's entry lives in its parent: after a power loss a directory
// created moments ago can be gone, with every file in it, even though those files were fsynced
// (ext4 and xfs persist a file's data and its own entry with fsync, not the entries of the
// directories above it). So whoever creates a directory that will hold durable files fsyncs the
// parent of each level it creates.
//
// Stateless; any thread. The test hook is process-wide.
#pragma once

#include <filesystem>
#include <functional>

#include "core/status.h"

namespace kvault {

// fsync of the directory `dir` itself (its entries: files created, renamed or removed in it).
Status SyncDir(const std::filesystem::path& dir);

// `mkdir -p dir`, fsyncing the parent of each level it creates (from the top down), so that
// `dir` survives a power loss once this returns. Returns how many levels were missing (0: `dir`
// existed). A level that appears meanwhile (another thread or process) counts as created here,
// and its parent is synced too. An existing non-directory on the way is an IOError.
StatusOr<int> CreateDirsDurably(const std::filesystem::path& dir);

// Tests: `hook` sees every directory SyncDir is about to fsync (an empty function: none).
void SetSyncDirHookForTesting(std::function<void(const std::filesystem::path&)> hook);

}  // namespace kvault
