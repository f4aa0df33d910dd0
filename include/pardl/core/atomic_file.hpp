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

/// The temporary file's name is the target's with this added (mkstemp replaces the six X).
inline constexpr char temporary_suffix[] = ".tmp-XXXXXX";
inline constexpr std::size_t temporary_suffix_length = sizeof temporary_suffix - 1;

/// Why an atomic write to `path` must not go ahead, or "" if it may: an empty path; a symbolic
/// link (the rename would replace the link, not the file it names; following it by hand would
/// bypass the kernel's protection against links planted in shared folders such as /tmp, and
/// /dev/stdout is one, to a terminal, a pipe or a log the rename would replace); a folder; a
/// device, FIFO or socket, which the rename would delete rather than write into; a path that
/// ends in '/'; a name too long for its folder once the temporary file's suffix is added (found
/// before a run, not when its checkpoint is due).
inline std::string atomic_write_problem(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    if (path.empty()) return "the path is empty";
    if (!path.has_filename()) return "ends in '/', which names a folder: name a file";
    {
        const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
        const long limit = ::pathconf(dir.c_str(), _PC_NAME_MAX); // -1 where the folder is not there
        const std::size_t name_max = limit > 0 ? static_cast<std::size_t>(limit) : 255;
        const std::size_t name = path.filename().string().size();
        if (name + temporary_suffix_length > name_max)
            return "its name is " + std::to_string(name) + " bytes, and with the temporary file's suffix (" +
                   std::to_string(temporary_suffix_length) + ") it would pass the folder's limit of " +
                   std::to_string(name_max) + ": use a shorter name";
    }
    std::error_code ec;
    const fs::file_status link = fs::symlink_status(path, ec);
    if (fs::is_symlink(link)) {
        const fs::path to = fs::read_symlink(path, ec);
        return "is a symbolic link" + (ec ? std::string() : " (to " + to.string() + ")") +
               ", which the atomic write would replace: name the file itself";
    }
    if (fs::is_directory(link)) return "is a folder; name a file in it";
    if (fs::exists(link) && !fs::is_regular_file(link))
        return "is not a regular file (a device, FIFO or socket): writing would replace it";
    return {};
}

/// The permissions a new file gets from open(2) with mode 0666: the process's umask applied
/// (read from /proc/self/status, since umask(2) can only be read by setting it, which would race
/// with other threads); 0644 where it cannot be read.
inline mode_t new_file_mode() {
    std::FILE* status = std::fopen("/proc/self/status", "r");
    if (status == nullptr) return 0644;
    char line[256];
    unsigned mask = 022;
    while (std::fgets(line, sizeof line, status) != nullptr)
        if (std::sscanf(line, "Umask: %o", &mask) == 1) break;
    std::fclose(status);
    return static_cast<mode_t>(0666 & ~mask);
}

/// Writes `what` to `path` atomically. `fill(put)` produces the contents through
/// put(const void* bytes, std::size_t count). Every failure throws Failure ("cannot write <what>
/// <path>: why") and leaves `path` as it was, with no temporary file left behind; so does a path
/// atomic_write_problem refuses. A file that is replaced keeps its permissions; a new one gets
/// those the umask leaves, as any file the process creates.
template <class Failure, class Fill>
void write_file_atomically(const std::filesystem::path& path, const std::string& what, Fill&& fill) {
    namespace fs = std::filesystem;
    if (const std::string problem = atomic_write_problem(path); !problem.empty())
        throw Failure("cannot write " + what + " " + path.string() + ": " + problem);
    const fs::path& target = path;
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const std::string pattern = (dir / (target.filename().string() + temporary_suffix)).string();
    std::vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    const int fd = ::mkstemp(name.data());
    if (fd < 0)
        throw Failure("cannot write " + what + " " + path.string() + ": cannot create a temporary file in " +
                      dir.string() + ": " + std::strerror(errno));
    const std::string tmp(name.data());
    // mkstemp creates the file 0600.
    struct stat old {};
    ::fchmod(fd, ::stat(target.c_str(), &old) == 0 ? (old.st_mode & 07777) : new_file_mode());
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
