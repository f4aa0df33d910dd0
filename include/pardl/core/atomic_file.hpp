// Writing a file atomically: into a temporary file beside it, renamed over it once complete and
// synced, so that the file is always the old one or the new one whole, never half of each. What
// checkpoints, timelines and the examples' run records share.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
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

/// Removes the temporary files that writes of `target` killed before their rename left beside it
/// (`<name>.tmp-` and mkstemp's six characters): a live write holds an exclusive flock on its
/// temporary file for as long as it runs, and the kernel drops the lock when its process dies, so a
/// file whose lock can be taken belongs to no running write. Best effort: what cannot be read or
/// removed is left. (A write of the same file by another process that is between mkstemp and its
/// flock can lose its temporary file; its rename then fails with an error, and nothing else.)
/// Each successful write_file_atomically calls it for its own target.
inline void remove_abandoned_temporaries(const std::filesystem::path& dir, const std::string& target_name) {
    namespace fs = std::filesystem;
    const std::string prefix = target_name + ".tmp-";
    const std::size_t random_length = 6; // mkstemp's XXXXXX
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() != prefix.size() + random_length || name.compare(0, prefix.size(), prefix) != 0)
            continue;
        const int fd = ::open(it->path().c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0)
            ::unlink(it->path().c_str()); // still locked by us: no new write can have taken it
        ::close(fd);
    }
}

/// Writes `what` to `path` atomically. `fill(put)` produces the contents through
/// put(const void* bytes, std::size_t count). Every failure throws Failure ("cannot write <what>
/// <path>: why") and leaves `path` as it was, with no temporary file left behind; so does a path
/// atomic_write_problem refuses. A file that is replaced keeps its permissions; a new one gets
/// those the umask leaves, as any file the process creates. A write killed outright (SIGKILL,
/// a power loss) cannot remove its temporary file: the next successful write of the same path
/// does (remove_abandoned_temporaries).
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
    // Held until the file is closed: it tells remove_abandoned_temporaries that this write lives.
    ::flock(fd, LOCK_EX | LOCK_NB);
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
    // Renamed while still open, and so still locked: no other write's clean-up can take it first.
    // The data is synced, so closing it after the rename has nothing left to fail on.
    if (std::rename(tmp.c_str(), target.c_str()) != 0)
        fail("cannot move it into place: " + std::string(std::strerror(errno)));
    open = false;
    ::close(fd);
    remove_abandoned_temporaries(dir, target.filename().string());
    // The rename is atomic; syncing the folder makes it durable too (after a power loss the new
    // file, not the old one, is there). Best effort: some file systems cannot sync a folder.
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

} // namespace pardl
