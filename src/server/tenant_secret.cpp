#include "server/tenant_secret.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/fs_sync.h"

namespace kvault {

namespace fs = std::filesystem;

namespace {

std::string Errno(int err) {
  return std::strerror(err);
}

Status WriteAll(int fd, const std::string& bytes, const fs::path& path) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError("write " + path.string() + ": " + Errno(errno));
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return Status::IOError("fsync " + path.string() + ": " + Errno(errno));
  return Status::Ok();
}

// The whole file if it exists; NotFound if not. The file must be a regular file (not a symbolic
// link: never followed), owned by this user and closed to group and others (anyone who read it can
// test guesses of API keys against tenant ids): anything else is PermissionDenied, never replaced.
StatusOr<std::string> ReadSecret(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(file.string());
    if (err == ELOOP) {
      return Status::PermissionDenied(file.string() +
                                      " is a symbolic link: the tenant secret must be a file of its "
                                      "own (it is not followed)");
    }
    return Status::PermissionDenied(file.string() + " exists but cannot be read: " + Errno(err));
  }
  struct stat st {};
  Status refused;
  if (::fstat(fd, &st) != 0) {
    refused = Status::PermissionDenied("cannot stat " + file.string() + ": " + Errno(errno));
  } else if (!S_ISREG(st.st_mode)) {
    refused = Status::PermissionDenied(file.string() + " is not a regular file");
  } else if (st.st_uid != ::geteuid()) {
    refused = Status::PermissionDenied(file.string() + " belongs to uid " + std::to_string(st.st_uid) +
                                       ", not to this user (uid " + std::to_string(::geteuid()) + ")");
  } else if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    refused = Status::PermissionDenied(file.string() + " has mode " + mode +
                                       ": group or others may read or change it; check who did, then `chmod 600` it");
  }
  if (!refused.ok()) {
    ::close(fd);
    return refused;
  }
  std::string bytes;
  char buf[256];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::PermissionDenied(file.string() + " exists but cannot be read: " + Errno(err));
    }
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
    if (bytes.size() > 4096) break;  // not a secret file
  }
  ::close(fd);
  if (bytes.size() != kTenantSecretBytes) {
    return Status::Corruption(file.string() + " holds " + std::to_string(bytes.size()) + " bytes, not " +
                              std::to_string(kTenantSecretBytes) +
                              ": it is not kvault's tenant secret (move it away only if you accept new tenant ids, "
                              "and with them cold caches)");
  }
  // Its creator may have stopped between link(2) and the fsync of the directory.
  if (Status synced = SyncDir(file.parent_path()); !synced.ok()) {
    spdlog::warn("tenant secret: {} (its entry may not survive a power loss yet)", synced.message());
  }
  return bytes;
}

// Where link(2) is not supported (some network and FUSE file systems): the final name created
// exclusively and written in place. Not atomic: a server starting at the same moment can find it
// short (Corruption, it stops; a restart reads the complete file).
StatusOr<std::string> CreateInPlace(const fs::path& file, const std::string& secret) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) return ReadSecret(file);
    return Status::IOError("cannot create " + file.string() + ": " + Errno(err));
  }
  Status s = ::fchmod(fd, 0600) == 0 ? Status::Ok() : Status::IOError("chmod " + file.string() + ": " + Errno(errno));
  if (s.ok()) s = WriteAll(fd, secret, file);
  ::close(fd);
  if (!s.ok()) {
    ::unlink(file.c_str());
    return s;
  }
  if (Status synced = SyncDir(file.parent_path()); !synced.ok()) return synced;
  return secret;
}

}  // namespace

StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t off = 0;
  while (off < n) {
    const ssize_t got = ::getrandom(out.data() + off, n - off, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::Internal("getrandom: " + Errno(errno));
    off += static_cast<size_t>(got);
  }
  return out;
}

StatusOr<std::string> LoadOrCreateTenantSecret(const fs::path& file) {
  auto existing = ReadSecret(file);
  if (existing.ok() || existing.status().code() != Status::Code::kNotFound) return existing;

  if (auto made = CreateDirsDurably(file.parent_path()); !made.ok()) return made.status();
  auto secret = RandomBytes(kTenantSecretBytes);
  if (!secret.ok()) return secret.status();
  // A temporary name of our own (O_EXCL), complete and durable before it gets the real name.
  auto suffix = RandomBytes(8);
  if (!suffix.ok()) return suffix.status();
  std::string tag;
  for (unsigned char c : *suffix) tag += "0123456789abcdef"[c & 15];
  const fs::path tmp = file.string() + "." + std::to_string(::getpid()) + "-" + tag + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot create " + tmp.string() + ": " + Errno(errno));
  Status s = ::fchmod(fd, 0600) == 0 ? Status::Ok() : Status::IOError("chmod " + tmp.string() + ": " + Errno(errno));
  if (s.ok()) s = WriteAll(fd, *secret, tmp);
  ::close(fd);
  // link(2) never replaces an existing name: exactly one of several creators wins.
  int link_err = 0;
  if (s.ok() && ::link(tmp.c_str(), file.c_str()) != 0) link_err = errno;
  ::unlink(tmp.c_str());
  if (!s.ok()) return s;
  if (link_err == EEXIST) return ReadSecret(file);  // another process won: its secret
  if (link_err == EPERM || link_err == ENOTSUP || link_err == EXDEV || link_err == ENOSYS) {
    return CreateInPlace(file, *secret);  // no hard links here
  }
  if (link_err != 0) return Status::IOError("cannot create " + file.string() + ": " + Errno(link_err));
  if (Status synced = SyncDir(file.parent_path()); !synced.ok()) return synced;
  return secret;
}

}  // namespace kvault
