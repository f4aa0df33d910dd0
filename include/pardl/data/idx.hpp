// Reader for the IDX format of MNIST and Fashion-MNIST (big-endian magic, dimensions, bytes),
// from gzip or plain files alike (see GzReader). Every defect of a file surfaces as a
// pardl::DataError naming the file and the problem; no input can crash it.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/data/dataset.hpp"
#include "pardl/data/files.hpp"
#include "pardl/data/gz_reader.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace pardl {

/// A raw IDX array: its dimensions (outermost first) and its unsigned-byte payload.
struct IdxArray {
    std::vector<std::size_t> dims;
    std::vector<std::uint8_t> data;

    /// Number of items along the first dimension (images, labels).
    std::size_t items() const noexcept { return dims.empty() ? 0 : dims.front(); }
    /// Bytes per item: the product of the inner dimensions (1 for a label file).
    std::size_t item_size() const noexcept {
        std::size_t s = 1;
        for (std::size_t i = 1; i < dims.size(); ++i) s *= dims[i];
        return s;
    }
};

/// The largest payload read_idx accepts; anything bigger is treated as a corrupt header.
inline constexpr std::uint64_t max_idx_bytes = std::uint64_t{1} << 34; // 16 GiB

/// Where the Debian package dataset-fashion-mnist installs the four files.
inline const std::filesystem::path default_fashion_mnist_dir{"/usr/share/datasets/fashion-mnist"};

namespace detail {

inline std::string hex32(std::uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
    return buf;
}

inline std::string hex8(unsigned v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
    return buf;
}

inline std::string shape_string(const std::vector<std::size_t>& dims) {
    std::string s;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (i) s += 'x';
        s += std::to_string(dims[i]);
    }
    return s;
}

} // namespace detail

/// Reads one IDX file (gzip or plain). `expected_dims` (0 = any) pins the magic number to
/// 0x000008NN with NN = expected_dims, e.g. 1 for label files and 3 for image files.
/// Only the unsigned-byte type (0x08) is supported.
/// @throws DataError naming the file: missing, unreadable, wrong magic, unsupported type, zero or
///         absurd dimensions, truncated data, trailing bytes, or a corrupt gzip stream (including a
///         missing or truncated trailer and a CRC-32 or length that does not match the data).
inline IdxArray read_idx(const std::filesystem::path& path, std::size_t expected_dims = 0) {
    using detail::concat;
    detail::GzReader in(path, "IDX file");
    const auto fail = [&](const auto&... parts) {
        return DataError(concat("IDX file '", path.string(), "': ", parts...));
    };
    const auto gz_note = [&]() -> std::string {
        return in.stream_truncated() ? " (the gzip stream ends unexpectedly)" : "";
    };
    const auto be32 = [](const unsigned char* p) {
        return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
               std::uint32_t{p[3]};
    };
    const std::string expected_magic =
        expected_dims ? detail::hex32(0x800u + static_cast<std::uint32_t>(expected_dims)) : "0x000008NN";

    unsigned char head[4];
    const std::size_t got_magic = in.read(head, 4);
    if (got_magic == 0)
        throw fail("empty file (truncated: expected at least 4 header bytes, got 0)", gz_note());
    if (got_magic < 4) throw fail("truncated header: expected 4 magic bytes, got ", got_magic, gz_note());
    const std::uint32_t magic = be32(head);
    if (head[0] != 0 || head[1] != 0)
        throw fail("wrong magic number: expected ", expected_magic, ", found ", detail::hex32(magic),
                   " (not an IDX file)");
    if (head[2] != 0x08)
        throw fail("unsupported data type byte ", detail::hex8(head[2]), " in magic ", detail::hex32(magic),
                   " (only 0x08, unsigned byte, is supported)");
    const std::size_t ndims = head[3];
    if (expected_dims != 0 && ndims != expected_dims)
        throw fail("wrong magic number: expected ", expected_magic, ", found ", detail::hex32(magic), " (",
                   ndims, " dimensions instead of ", expected_dims, ")");
    if (ndims == 0 || ndims > 8)
        throw fail("absurd number of dimensions: ", ndims, " (magic ", detail::hex32(magic), ")");

    std::array<unsigned char, 4 * 8> dim_bytes{};
    const std::size_t got_dims = in.read(dim_bytes.data(), 4 * ndims);
    if (got_dims < 4 * ndims)
        throw fail("truncated header: expected ", 4 * ndims, " bytes of dimensions, got ", got_dims,
                   gz_note());

    IdxArray out;
    out.dims.resize(ndims);
    std::uint64_t total = 1;
    bool absurd = false;
    for (std::size_t i = 0; i < ndims; ++i) out.dims[i] = be32(dim_bytes.data() + 4 * i);
    for (std::size_t i = 0; i < ndims; ++i) {
        if (out.dims[i] == 0)
            throw fail("zero dimension: dimension ", i, " of shape ", detail::shape_string(out.dims),
                       " is 0");
        // dims are < 2^32, so the product can only exceed the limit one factor at a time
        if (!absurd) {
            total *= out.dims[i];
            if (total > max_idx_bytes) absurd = true;
        }
    }
    if (absurd)
        throw fail("absurd dimensions ", detail::shape_string(out.dims), " (more than ", max_idx_bytes,
                   " bytes of data)");

    // Grow geometrically instead of trusting the header with one big allocation, so a corrupt
    // header costs no more memory than the file really holds.
    const std::size_t want_total = static_cast<std::size_t>(total);
    std::size_t have = 0;
    while (have < want_total) {
        const std::size_t step =
            std::min(want_total - have, std::max<std::size_t>(have, std::size_t{1} << 20));
        out.data.resize(have + step);
        const std::size_t r = in.read(out.data.data() + have, step);
        have += r;
        if (r < step) break;
    }
    if (have < want_total)
        throw fail("truncated data: the header (shape ", detail::shape_string(out.dims), ") promises ",
                   want_total, " bytes, got ", have, gz_note());

    // The file must hold exactly the array its header describes, so any byte after the payload is
    // an error: extra bytes of a plain file, extra decompressed bytes (from the same gzip member or
    // a later one, since concatenated members are one stream as gunzip reads them), and non-gzip
    // bytes after the last member (GzReader throws for those). Such bytes mean that the header or
    // the file is wrong (a botched copy or concatenation), and no defect may pass silently. Empty
    // gzip members add no bytes and are accepted. Reading on to the end also makes GzReader check
    // the trailer (CRC-32 and length) of the last member, which comes after the payload.
    std::size_t extra = 0;
    unsigned char sink[4096];
    for (std::size_t r; (r = in.read(sink, sizeof sink)) > 0;) extra += r;
    if (in.stream_truncated())
        throw fail("truncated gzip stream: the data is complete but the gzip trailer (CRC-32 and "
                   "length) is missing or cut short, so the data cannot be verified");
    if (extra)
        throw fail("trailing garbage: ", extra, " bytes after the ", want_total,
                   " data bytes the header promises (shape ", detail::shape_string(out.dims), ")");
    return out;
}

/// Loads an image file (magic 0x00000803) and its label file (magic 0x00000801) as one Dataset:
/// pixels divided by 255 into [0, 1], sample_shape {1, rows, cols}. `limit` > 0 keeps only the
/// first `limit` samples (the whole files are still validated).
/// @throws DataError as read_idx, and when the counts differ or a label is outside [0, classes).
inline Dataset load_idx_pair(const std::filesystem::path& images_path,
                             const std::filesystem::path& labels_path, std::size_t limit = 0,
                             std::size_t classes = 10) {
    using detail::concat;
    PARDL_REQUIRE(classes > 0, ConfigError, "load_idx_pair: classes must be positive");
    const IdxArray images = read_idx(images_path, 3);
    const IdxArray labels = read_idx(labels_path, 1);
    if (images.items() != labels.items())
        throw DataError(concat("IDX pair mismatch: images file '", images_path.string(), "' holds ",
                               images.items(), " images but labels file '", labels_path.string(), "' holds ",
                               labels.items(), " labels"));
    for (std::size_t i = 0; i < labels.data.size(); ++i)
        if (labels.data[i] >= classes)
            throw DataError(concat("IDX file '", labels_path.string(), "': label ", unsigned{labels.data[i]},
                                   " at index ", i, " is out of range [0, ", classes, ")"));

    const std::size_t n = limit ? std::min(limit, images.items()) : images.items();
    Dataset d = detail::make_dataset(n, {1, images.dims[1], images.dims[2]}, classes);
    std::array<float, 256> scale{};
    for (std::size_t v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
    const std::size_t count = n * d.cols;
    for (std::size_t i = 0; i < count; ++i) d.features[i] = scale[images.data[i]];
    for (std::size_t i = 0; i < n; ++i) d.labels[i] = labels.data[i];
    return d;
}

namespace detail {
inline constexpr const char* fashion_mnist_hint =
    "; install the Debian package dataset-fashion-mnist or give the directory that holds the files "
    "(--data DIR in the examples)";

/// The standard name of a Fashion-MNIST file, without ".gz": "train-images-idx3-ubyte" and so on.
inline std::string fashion_mnist_name(bool train, bool images) {
    return std::string(train ? "train" : "t10k") + (images ? "-images-idx3-ubyte" : "-labels-idx1-ubyte");
}

/// `dir/name.gz` if it exists, else `dir/name` if that exists, else throws with the install hint.
inline std::filesystem::path find_fashion_file(const std::filesystem::path& dir, const std::string& name) {
    std::error_code ec;
    const auto gz = dir / (name + ".gz");
    if (std::filesystem::exists(gz, ec)) return gz;
    const auto plain = dir / name;
    if (std::filesystem::exists(plain, ec)) return plain;
    throw DataError(concat("Fashion-MNIST file '", gz.string(), "' (or '", plain.string(), "') not found",
                           fashion_mnist_hint));
}
} // namespace detail

/// Fashion-MNIST's image side: read_idx accepts any shape, but images of another size are not
/// Fashion-MNIST, whatever the file is called, and a model built for 28x28 inputs must not train
/// on them silently (an MLP sees only 784 values per row, so 14x56 would pass unnoticed).
inline constexpr std::size_t fashion_mnist_side = 28;

/// Loads the Fashion-MNIST training (60000) or test (10000) set from `dir`, which holds the
/// standard file names, gzipped or not (gzipped preferred when both exist).
/// @throws DataError as load_idx_pair, when `dir` is not a directory, and when the images are not
///         28x28.
inline Dataset load_fashion_mnist(const std::filesystem::path& dir = default_fashion_mnist_dir,
                                  bool train = true, std::size_t limit = 0) {
    detail::require_directory(dir, "Fashion-MNIST directory", detail::fashion_mnist_hint);
    const auto images = detail::find_fashion_file(dir, detail::fashion_mnist_name(train, true));
    const auto labels = detail::find_fashion_file(dir, detail::fashion_mnist_name(train, false));
    Dataset d = load_idx_pair(images, labels, limit, 10);
    const std::size_t rows = d.sample_shape[1], cols = d.sample_shape[2];
    if (rows != fashion_mnist_side || cols != fashion_mnist_side)
        throw DataError(detail::concat("Fashion-MNIST file '", images.string(), "': images are ", rows, "x",
                                       cols, " pixels, but Fashion-MNIST's are ", fashion_mnist_side, "x",
                                       fashion_mnist_side));
    return d;
}

} // namespace pardl
