// The dashboard's files (src/server/ui/), compiled into the binary by cmake/embed_assets.cmake
// (the definitions are generated into the build tree). Read-only data: any thread.
#pragma once

#include <cstddef>

namespace kvault {

struct EmbeddedFile {
  const char* name;           // file name, no directory ("index.html")
  const unsigned char* data;  // `size` bytes (followed by a 0 that is not part of the file)
  size_t size;
  const char* etag;  // a quoted strong ETag: the first 16 hex digits of the file's SHA-256
};

extern const EmbeddedFile kEmbeddedUi[];
extern const size_t kEmbeddedUiCount;

}  // namespace kvault
