// Checks on the paths the dataset readers are given, shared by the IDX and CIFAR-10 loaders so that
// every reader words a missing file, a wrong kind of file and a wrong kind of directory alike.
#pragma once

#include "pardl/core/errors.hpp"

#include <filesystem>
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
    if (!std::filesystem::is_regular_file(st))
        throw DataError(concat(kind, " '", path.string(), "': unreadable: it is ", file_type_name(st.type()),
                               ", not a regular file"));
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
