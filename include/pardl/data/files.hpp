// Checks on the paths the dataset readers are given, shared by the IDX and CIFAR-10 loaders so that
// every reader words a missing file, a wrong kind of file and a wrong kind of directory alike.
#pragma once

#include "pardl/core/errors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace pardl::detail {

/// "a directory", "a FIFO", ... for messages that say what a path is instead of what it should be.
inline const char* file_type_name(std::filesystem::file_type t) {
    using std::filesystem::file_type;
    switch (t) {
    case file_type::regular:
        return "a regular file";
    case file_type::directory:
        return "a directory";
    case file_type::fifo:
        return "a FIFO";
    case file_type::socket:
        return "a socket";
    case file_type::block:
        return "a block device";
    case file_type::character:
        return "a character device";
    case file_type::symlink:
        return "a symbolic link";
    default:
        return "of unknown type";
    }
}

/// What a path whose status (by name, following symbolic links) is `st` names, when it exists and
/// is not a regular file: "a directory", "a FIFO", ...; null for a regular file and for a path that
/// is missing or could not be examined, which each caller words itself.
inline const char* other_than_regular_file(const std::filesystem::file_status& st) {
    return std::filesystem::exists(st) && !std::filesystem::is_regular_file(st) ? file_type_name(st.type())
                                                                                : nullptr;
}

/// Whether `a` and `b` name the same file: one file (device and inode) where both exist, through
/// a hard or symbolic link or another spelling of the path; else the same path once each is made
/// absolute and its existing part resolved, for a file not written yet. A program checks with it
/// that an output it is about to write is not one of its inputs, nor another of its outputs.
inline bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    std::error_code ec, ea, eb;
    if (std::filesystem::equivalent(a, b, ec)) return true;
    const std::filesystem::path ca = std::filesystem::weakly_canonical(a, ea);
    const std::filesystem::path cb = std::filesystem::weakly_canonical(b, eb);
    return !ea && !eb && ca == cb;
}

/// Throws DataError unless `path` names an existing regular file (after following symlinks).
/// Checked before the file is opened: opening a FIFO blocks until a writer comes, and a device
/// such as /dev/zero never ends, so anything but a regular file is refused unopened. `kind` opens
/// the message ("IDX file"); `hint` (may be empty) is appended to the "not found" message.
inline void require_regular_file(const std::filesystem::path& path, std::string_view kind,
                                 std::string_view hint = {}) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (st.type() == std::filesystem::file_type::not_found)
        throw DataError(concat(kind, " '", path.string(), "': file not found", hint));
    if (ec) throw DataError(concat(kind, " '", path.string(), "': unreadable (", ec.message(), ")"));
    if (const char* other = other_than_regular_file(st))
        throw DataError(
            concat(kind, " '", path.string(), "': unreadable: it is ", other, ", not a regular file"));
}

/// A file opened for reading, closed with its handle.
struct FileCloser {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};
using FileHandle = std::unique_ptr<std::FILE, FileCloser>;

/// The file type of an fstat mode, for file_type_name.
inline std::filesystem::file_type file_type_of(mode_t mode) {
    using std::filesystem::file_type;
    if (S_ISREG(mode)) return file_type::regular;
    if (S_ISDIR(mode)) return file_type::directory;
    if (S_ISFIFO(mode)) return file_type::fifo;
    if (S_ISCHR(mode)) return file_type::character;
    if (S_ISBLK(mode)) return file_type::block;
    if (S_ISSOCK(mode)) return file_type::socket;
    return file_type::unknown;
}

/// Opens `path` for reading (binary) if it names a regular file: returns the file and its size,
/// or a null file and, in `why`, what the path is instead or why it did not open. The check is
/// made on the file opened (fstat), so a FIFO or device put in place of the file after a check by
/// name (require_regular_file, which callers run first: opening some devices does something) is
/// refused too; O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer,
/// and is cleared before the file is read; O_NOCTTY keeps a terminal from becoming the process's.
inline FileHandle open_regular_file(const std::filesystem::path& path, std::string& why,
                                    std::uintmax_t* size = nullptr) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        why = errno == ENOENT ? std::string("file not found")
                              : concat("cannot open it (", std::strerror(errno), ")");
        return nullptr;
    }
    struct stat st {};
    std::FILE* f = nullptr;
    if (::fstat(fd, &st) != 0) {
        why = concat("cannot read what it is (", std::strerror(errno), ")");
    } else if (!S_ISREG(st.st_mode)) {
        why = concat("it is ", file_type_name(file_type_of(st.st_mode)), ", not a regular file");
    } else {
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0) f = ::fdopen(fd, "rb");
        if (f == nullptr) why = concat("cannot open it (", std::strerror(errno), ")");
    }
    if (f == nullptr) {
        ::close(fd);
        return nullptr;
    }
    if (size) *size = static_cast<std::uintmax_t>(st.st_size);
    return FileHandle(f);
}

/// Throws DataError unless `dir` names an existing directory. `kind` opens the message
/// ("Fashion-MNIST directory"); `hint` (may be empty) is appended to both failure messages, since
/// a file given where the directory belongs is the same mistake as a wrong directory.
inline void require_directory(const std::filesystem::path& dir, std::string_view kind,
                              std::string_view hint = {}) {
    std::error_code ec;
    const auto st = std::filesystem::status(dir, ec);
    if (st.type() == std::filesystem::file_type::not_found)
        throw DataError(concat(kind, " '", dir.string(), "' not found", hint));
    if (ec) throw DataError(concat(kind, " '", dir.string(), "' unreadable (", ec.message(), ")", hint));
    if (!std::filesystem::is_directory(st))
        throw DataError(concat(kind, " '", dir.string(), "' is not a directory (it is ",
                               file_type_name(st.type()), ")", hint));
}

} // namespace pardl::detail
