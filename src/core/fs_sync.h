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
// `dir` survives a power loss once this returns. New levels are made with mode 0777 less the
// umask. Returns how many levels were missing (0: `dir` existed). A level that appears meanwhile
// (another thread or process) counts as created here, and its parent is synced too. An existing
// non-directory on the way is an IOError. A level whose parent could not be fsynced is an error
// and is remembered (in this process): a later call for it or a directory below it fsyncs that
// parent again before it succeeds.
StatusOr<int> CreateDirsDurably(const std::filesystem::path& dir);

// Tests: `hook` sees every directory SyncDir is about to fsync (an empty function: none); when it
// returns false, that fsync fails (IOError) without being tried.
void SetSyncDirHookForTesting(std::function<bool(const std::filesystem::path&)> hook);

}  // namespace kvault
