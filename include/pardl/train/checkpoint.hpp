// Checkpoint files: a versioned header (magic, format version, model signature, sizes, CRC-32)
// followed by the flat parameter and state buffers. Written atomically (temporary file in the
// same directory, fsync, rename), so a crash never leaves a half-written checkpoint behind.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "pardl/core/errors.hpp"

namespace pardl {

inline constexpr char checkpoint_magic[8] = {'P', 'A', 'R', 'D', 'L', 'C', 'K', 'P'};
inline constexpr std::uint32_t checkpoint_version = 1;

namespace detail {
static_assert(std::endian::native == std::endian::little, "pardl checkpoints assume a little-endian host");

inline std::uint32_t crc_of(std::span<const float> a, std::span<const float> b) {
    uLong crc = crc32(0L, Z_NULL, 0);
    auto add = [&](std::span<const float> s) {
        const auto* p = reinterpret_cast<const Bytef*>(s.data());
        std::size_t bytes = s.size_bytes();
        while (bytes > 0) { // crc32 takes uInt lengths
            const auto n = static_cast<uInt>(std::min<std::size_t>(bytes, 1u << 30));
            crc = crc32(crc, p, n);
            p += n;
            bytes -= n;
        }
    };
    add(a);
    add(b);
    return static_cast<std::uint32_t>(crc);
}
} // namespace detail

/// Writes parameters and state for the model named `signature` to `path`, atomically.
inline void save_checkpoint(const std::filesystem::path& path, const std::string& signature,
                            std::span<const float> params, std::span<const float> state) {
    namespace fs = std::filesystem;
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    std::string tmpl = (dir / (path.filename().string() + ".tmp-XXXXXX")).string();
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    const int fd = mkstemp(name.data());
    PARDL_REQUIRE(fd >= 0, CheckpointError, "cannot create a temporary file next to ", path, ": ",
                  std::strerror(errno));
    const std::string tmp(name.data());
    // mkstemp creates the file 0600; a checkpoint is an ordinary result file.
    ::fchmod(fd, 0644);
    auto fail = [&](const std::string& why) {
        ::close(fd);
        std::remove(tmp.c_str());
        throw CheckpointError("cannot write checkpoint " + path.string() + ": " + why);
    };
    auto put = [&](const void* p, std::size_t n) {
        const char* c = static_cast<const char*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd, c, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail(std::strerror(errno));
            }
            c += w;
            n -= static_cast<std::size_t>(w);
        }
    };
    const auto sig_len = static_cast<std::uint32_t>(signature.size());
    const std::uint64_t np = params.size(), ns = state.size();
    const std::uint32_t crc = detail::crc_of(params, state);
    put(checkpoint_magic, sizeof checkpoint_magic);
    put(&checkpoint_version, sizeof checkpoint_version);
    put(&sig_len, sizeof sig_len);
    put(signature.data(), signature.size());
    put(&np, sizeof np);
    put(&ns, sizeof ns);
    put(&crc, sizeof crc);
    put(params.data(), params.size_bytes());
    put(state.data(), state.size_bytes());
    if (::fsync(fd) != 0) fail(std::string("fsync: ") + std::strerror(errno));
    if (::close(fd) != 0) {
        std::remove(tmp.c_str());
        throw CheckpointError("cannot write checkpoint " + path.string() + ": close failed");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw CheckpointError("cannot move checkpoint into place at " + path.string() + ": " + why);
    }
    // The rename is atomic; syncing the folder makes it durable too (after a power loss the new
    // file, not the old one, is there). Best effort: some file systems cannot sync a folder.
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
}

/// Reads a checkpoint written by save_checkpoint into params/state, whose sizes must match.
/// Every mismatch (other model, other version, truncation, corruption) is a CheckpointError.
inline void load_checkpoint(const std::filesystem::path& path, const std::string& signature,
                            std::span<float> params, std::span<float> state) {
    std::ifstream in(path, std::ios::binary);
    PARDL_REQUIRE(in, CheckpointError, "cannot open checkpoint ", path);
    const std::string where = "checkpoint " + path.string();
    auto get = [&](void* p, std::size_t n, const char* what) {
        in.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
        PARDL_REQUIRE(static_cast<std::size_t>(in.gcount()) == n, CheckpointError, where,
                      " is truncated (in ", what, ")");
    };
    char magic[8];
    get(magic, sizeof magic, "header");
    PARDL_REQUIRE(std::memcmp(magic, checkpoint_magic, sizeof magic) == 0, CheckpointError, where,
                  " is not a pardl checkpoint (bad magic)");
    std::uint32_t version = 0, sig_len = 0;
    get(&version, sizeof version, "header");
    PARDL_REQUIRE(version == checkpoint_version, CheckpointError, where, " has format version ", version,
                  "; this build reads version ", checkpoint_version);
    get(&sig_len, sizeof sig_len, "header");
    PARDL_REQUIRE(sig_len < (1u << 20), CheckpointError, where, " has a corrupt header");
    std::string sig(sig_len, '\0');
    get(sig.data(), sig_len, "header");
    PARDL_REQUIRE(sig == signature, CheckpointError, where, " was written for model ", sig,
                  ", not for this model ", signature);
    std::uint64_t np = 0, ns = 0;
    std::uint32_t crc = 0;
    get(&np, sizeof np, "header");
    get(&ns, sizeof ns, "header");
    get(&crc, sizeof crc, "header");
    PARDL_REQUIRE(np == params.size() && ns == state.size(), CheckpointError, where, " holds ", np,
                  " parameters and ", ns, " state values; the model has ", params.size(), " and ",
                  state.size());
    get(params.data(), params.size_bytes(), "parameters");
    get(state.data(), state.size_bytes(), "state");
    PARDL_REQUIRE(in.peek() == std::char_traits<char>::eof(), CheckpointError, where, " has trailing bytes");
    PARDL_REQUIRE(detail::crc_of(params, state) == crc, CheckpointError, where,
                  " is corrupt (checksum mismatch)");
}

} // namespace pardl
