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

/// The temporary file's name is the target's with this added (mkstemp replaces the six X). Named
/// after pardl so that no file of the user's is taken for one (remove_abandoned_temporaries).
inline constexpr char temporary_suffix[] = ".pardl-tmp-XXXXXX";
inline constexpr std::size_t temporary_suffix_length = sizeof temporary_suffix - 1;
inline constexpr std::size_t temporary_random_length = 6; // the X mkstemp replaces

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
/// (its name, temporary_suffix, six random characters): a live write holds an exclusive flock on
/// its temporary file until it is renamed, and the lock goes with the last descriptor of the file,
/// that is with the write's process (the descriptor is not inherited across exec), so a file whose
/// lock can be taken belongs to no running write. Best effort and never throws: what cannot be
/// read or removed is left. Each successful write_file_atomically calls it for its own target.
inline void remove_abandoned_temporaries(const std::filesystem::path& dir,
                                         const std::string& target_name) noexcept {
    namespace fs = std::filesystem;
    try {
        const std::string prefix =
            target_name + std::string(temporary_suffix, temporary_suffix_length - temporary_random_length);
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.size() != prefix.size() + temporary_random_length ||
                name.compare(0, prefix.size(), prefix) != 0)
                continue;
            const int fd =
                ::open(it->path().c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
            if (fd < 0) continue;
            struct stat held {};
            struct stat named {};
            // Removed by name only while the name still leads to the file locked (not replaced since).
            if (::fstat(fd, &held) == 0 && S_ISREG(held.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
                ::lstat(it->path().c_str(), &named) == 0 && named.st_dev == held.st_dev &&
                named.st_ino == held.st_ino)
                ::unlink(it->path().c_str());
            ::close(fd);
        }
    } catch (...) {
        // Out of memory for a name: the leftovers stay until a later write.
    }
}

/// Creates and locks the temporary file for `pattern` (mkstemp's, with O_CLOEXEC). A clean-up of
/// the same target by another process can take a file between its creation and its lock and
/// remove it: the lock then holds a file without a name (no links), and another is made. Where the
/// file system has no locks the file is used unlocked (a clean-up there cannot lock, so removes
/// nothing). Returns the descriptor and the name, or -1 with errno set.
inline int create_locked_temporary(const std::string& pattern, std::string& name) {
    for (int attempt = 0; attempt < 16; ++attempt) {
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        const int fd = ::mkostemp(buf.data(), O_CLOEXEC);
        if (fd < 0) return -1;
        struct stat st {};
        if (::flock(fd, LOCK_EX) != 0 || ::fstat(fd, &st) != 0 || st.st_nlink > 0) {
            name = buf.data();
            return fd;
        }
        ::close(fd); // removed by a clean-up before it was locked: make another
    }
    errno = EAGAIN;
    return -1;
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
    // Locked until it is renamed: the lock tells remove_abandoned_temporaries that this write lives.
    std::string tmp;
    const int fd = create_locked_temporary(pattern, tmp);
    if (fd < 0)
        throw Failure("cannot write " + what + " " + path.string() + ": cannot create a temporary file in " +
                      dir.string() + ": " + std::strerror(errno));
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
