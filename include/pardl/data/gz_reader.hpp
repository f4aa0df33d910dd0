// Sequential reader of a file that may be gzip-compressed: a file that starts with the gzip magic
// (1F 8B) is inflated, any other is passed through as is. Unlike zlib's gzread it proves that
// every gzip member is whole: its trailer (CRC-32 and length) is read and checked, and bytes after
// the last member must be another member. gzread of zlib 1.2.13 misses both: a large read can
// consume the last input while the trailer is cut short and still report a clean end, and it
// ignores whatever follows the last member.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/data/files.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pardl::detail {

/// Reads `path` (checked to be a regular file first) in order; every defect of the file or of
/// its gzip stream throws DataError with a message that opens with `kind 'path': `. A gzip stream
/// that simply ends early is not thrown: it is remembered (`stream_truncated`) so that the caller
/// can say how many bytes it expected and got.
class GzReader {
public:
    GzReader(const std::filesystem::path& path, std::string_view kind)
        : prefix_(concat(kind, " '", path.string(), "': ")) {
        require_regular_file(path, kind); // the messages for a missing file or a wrong kind of path
        std::string why;
        file_ = open_regular_file(path, why); // and again on the file opened (files.hpp)
        if (!file_) throw DataError(concat(prefix_, "unreadable: ", why));
        while (avail() < 2 && fill()) {
        }
        gzip_ = avail() >= 2 && strm_.next_in[0] == 0x1f && strm_.next_in[1] == 0x8b;
        if (gzip_ && inflateInit2(&strm_, 15 + 16) != Z_OK) // 15 + 16: gzip wrapper only
            throw DataError(concat(prefix_, "out of memory while starting to decompress"));
    }
    ~GzReader() {
        if (gzip_) inflateEnd(&strm_);
    }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    /// Reads up to n bytes; fewer only at the end of the data, after which it returns 0.
    std::size_t read(void* dst, std::size_t n) {
        auto* out = static_cast<unsigned char*>(dst);
        std::size_t got = 0;
        while (got < n && !ended_) {
            const std::size_t chunk = std::min<std::size_t>(n - got, std::size_t{1} << 30);
            const std::size_t r = gzip_ ? inflate_some(out + got, chunk) : copy_some(out + got, chunk);
            if (r == 0) ended_ = true;
            got += r;
        }
        return got;
    }

    /// True once the file has ended in the middle of a gzip member (its data or its trailer).
    bool stream_truncated() const noexcept { return truncated_; }

private:
    std::size_t avail() const noexcept { return strm_.avail_in; }

    /// Appends file bytes behind the unread ones in the buffer; false when none came (end of file).
    bool fill() {
        if (strm_.avail_in && strm_.next_in != buf_.data())
            std::memmove(buf_.data(), strm_.next_in, strm_.avail_in);
        strm_.next_in = buf_.data();
        const std::size_t r =
            std::fread(buf_.data() + strm_.avail_in, 1, buf_.size() - strm_.avail_in, file_.get());
        if (r == 0 && std::ferror(file_.get()))
            throw DataError(concat(prefix_, "unreadable (", std::strerror(errno), ")"));
        strm_.avail_in += static_cast<uInt>(r);
        return r > 0;
    }

    /// A plain file: the buffered head first, then straight from the file into `out`.
    std::size_t copy_some(unsigned char* out, std::size_t n) {
        if (avail()) {
            const std::size_t k = std::min<std::size_t>(n, avail());
            std::memcpy(out, strm_.next_in, k);
            strm_.next_in += k;
            strm_.avail_in -= static_cast<uInt>(k);
            return k;
        }
        const std::size_t r = std::fread(out, 1, n, file_.get());
        if (r == 0 && std::ferror(file_.get()))
            throw DataError(concat(prefix_, "unreadable (", std::strerror(errno), ")"));
        return r;
    }

    /// Inflates up to n bytes into `out` (0 only at the end of the data). inflate checks each
    /// member's CRC-32 and length as it reaches them and only then returns Z_STREAM_END, so the
    /// check costs no pass of its own.
    std::size_t inflate_some(unsigned char* out, std::size_t n) {
        strm_.next_out = out;
        strm_.avail_out = static_cast<uInt>(n);
        while (strm_.avail_out > 0) {
            if (member_done_ && !next_member()) break;
            if (!avail() && !fill()) {
                truncated_ = true; // the file ends inside a member, before its trailer is checked
                break;
            }
            const int ret = inflate(&strm_, Z_NO_FLUSH);
            if (ret == Z_STREAM_END)
                member_done_ = true;
            else if (ret == Z_MEM_ERROR)
                throw DataError(concat(prefix_, "out of memory while decompressing"));
            else if (ret != Z_OK && ret != Z_BUF_ERROR)
                throw DataError(
                    concat(prefix_, "corrupt gzip stream (zlib: ", strm_.msg ? strm_.msg : zError(ret), ")"));
        }
        return n - strm_.avail_out;
    }

    /// After a member's trailer: true when another member follows (concatenated gzip files form
    /// one stream, as gunzip reads them), false at the end of the file. Anything else there is
    /// not gzip data and throws, where gzread would ignore it.
    bool next_member() {
        while (avail() < 2 && fill()) {
        }
        if (!avail()) return false;
        if (avail() >= 2 && strm_.next_in[0] == 0x1f && strm_.next_in[1] == 0x8b) {
            inflateReset(&strm_);
            member_done_ = false;
            return true;
        }
        std::uint64_t junk = 0;
        do {
            junk += avail();
            strm_.avail_in = 0;
        } while (fill());
        throw DataError(concat(prefix_, "trailing garbage: ", junk,
                               " bytes after the end of the gzip stream are not gzip data"));
    }

    std::string prefix_;
    FileHandle file_;
    std::vector<unsigned char> buf_ = std::vector<unsigned char>(std::size_t{1} << 17);
    z_stream strm_{}; // next_in / avail_in also track the unread input of a plain file
    bool gzip_ = false;
    bool member_done_ = false;
    bool truncated_ = false;
    bool ended_ = false;
};

} // namespace pardl::detail
