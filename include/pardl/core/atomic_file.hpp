// Writing a file atomically: into a temporary file beside it, renamed over it once complete and
// synced, so that the file is always the old one or the new one whole, never half of each. What
// checkpoints, timelines and the examples' run records share.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace pardl {

/// The file that an atomic write to `path` replaces. A symbolic link is followed (chains too):
/// the link stays and the file it names is replaced, as writing through the link would. Throws
/// Failure ("cannot write <what> <path>: ...") for an empty path, and for a path that names
/// something other than a regular file: a folder, or a device (/dev/stdout), FIFO or socket,
/// which the rename would delete rather than write into.
template <class Failure>
std::filesystem::path atomic_write_target(const std::filesystem::path& path, const std::string& what) {
    namespace fs = std::filesystem;
    const auto fail = [&](const std::string& why) {
        throw Failure("cannot write " + what + " " + path.string() + ": " + why);
    };
    if (path.empty()) fail("the path is empty");
    fs::path target = path;
    std::error_code ec;
    for (int links = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++links) {
        if (links == 40) fail("too many levels of symbolic links");
        const fs::path next = fs::read_symlink(target, ec);
        if (ec) fail("cannot read the symbolic link " + target.string() + ": " + ec.message());
        target = next.is_absolute() ? next : target.parent_path() / next;
    }
    const fs::file_status status = fs::status(target, ec);
    if (fs::is_directory(status)) fail("is a folder; name a file in it");
    if (fs::exists(status) && !fs::is_regular_file(status))
        fail("is not a regular file (a device, FIFO or socket): writing would replace it");
    return target;
}

/// Writes `what` to `path` atomically. `fill(put)` produces the contents through
/// put(const void* bytes, std::size_t count). Every failure throws Failure ("cannot write <what>
/// <path>: why") and leaves `path` as it was, with no temporary file left behind. The path is
/// checked as atomic_write_target says.
template <class Failure, class Fill>
void write_file_atomically(const std::filesystem::path& path, const std::string& what, Fill&& fill) {
    namespace fs = std::filesystem;
    const fs::path target = atomic_write_target<Failure>(path, what);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const std::string pattern = (dir / (target.filename().string() + ".tmp-XXXXXX")).string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    const int fd = ::mkstemp(name.data());
    if (fd < 0)
        throw Failure("cannot write " + what + " " + path.string() + ": cannot create a temporary file in " +
                      dir.string() + ": " + std::strerror(errno));
    const std::string tmp(name.data());
    // mkstemp creates the file 0600; these are ordinary result files.
    ::fchmod(fd, 0644);
    bool open = true;
    const auto discard = [&] {
        if (open) ::close(fd);
        open = false;
        std::remove(tmp.c_str());
    };
    const auto fail = [&](const std::string& why) {
        discard();
        throw Failure("cannot write " + what + " " + path.string() + ": " + why);
    };
    const auto put = [&](const void* bytes, std::size_t count) {
        const char* c = static_cast<const char*>(bytes);
        while (count > 0) {
            const ssize_t w = ::write(fd, c, count);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(std::strerror(errno));
            }
            c += w;
            count -= static_cast<std::size_t>(w);
        }
    };
    try {
        fill(put);
    } catch (...) {
        discard();
        throw;
    }
    if (::fsync(fd) != 0) fail(std::string("fsync: ") + std::strerror(errno));
    open = false;
    if (::close(fd) != 0) fail(std::string("close: ") + std::strerror(errno));
    if (std::rename(tmp.c_str(), target.c_str()) != 0)
        fail("cannot move it into place: " + std::string(std::strerror(errno)));
    // The rename is atomic; syncing the folder makes it durable too (after a power loss the new
    // file, not the old one, is there). Best effort: some file systems cannot sync a folder.
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

} // namespace pardl
