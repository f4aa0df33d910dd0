// Reader for the CIFAR-10 binary version: records of 1 label byte + 3072 pixel bytes (R, G, B
// planes of 32x32), in data_batch_1..5.bin (training) and test_batch.bin. Defects throw
// pardl::DataError naming the file and the problem.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/data/dataset.hpp"
#include "pardl/data/files.hpp"

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

inline constexpr std::size_t cifar10_pixels = 3 * 32 * 32;        ///< bytes of pixels per record
inline constexpr std::size_t cifar10_record = 1 + cifar10_pixels; ///< bytes per record
inline constexpr std::size_t cifar10_classes = 10;

namespace detail {

inline constexpr const char* cifar10_hint =
    "; download the CIFAR-10 binary version (cifar-10-binary.tar.gz), unpack it and pass --data DIR";

/// A CIFAR-10 file opened and checked: its record count comes from the size of the file opened,
/// so a file replaced or truncated after a check by name cannot pass for the one counted.
struct Cifar10File {
    std::filesystem::path path; ///< for messages
    FileHandle in;
    std::size_t records = 0;
};

/// Opens a CIFAR-10 file and checks its size: a whole number of records, at least one.
inline Cifar10File open_cifar10(const std::filesystem::path& path) {
    require_regular_file(path, "CIFAR-10 file", cifar10_hint);
    std::string why;
    std::uintmax_t size = 0;
    Cifar10File file{path, open_regular_file(path, why, &size)};
    if (!file.in) throw DataError(concat("CIFAR-10 file '", path.string(), "': unreadable: ", why));
    if (size == 0) throw DataError(concat("CIFAR-10 file '", path.string(), "': empty file"));
    if (size % cifar10_record != 0)
        throw DataError(
            concat("CIFAR-10 file '", path.string(), "': size ", size,
                   " bytes is not a multiple of the record size ", cifar10_record,
                   " (1 label byte + 3072 pixel bytes); truncated or not a CIFAR-10 binary file"));
    file.records = static_cast<std::size_t>(size / cifar10_record);
    return file;
}

/// Reads the first `count` records of `file` into rows [first, first + count) of `d`.
inline void read_cifar10_records(const Cifar10File& file, std::size_t count, Dataset& d, std::size_t first) {
    std::array<float, 256> scale{};
    for (std::size_t v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
    std::vector<unsigned char> rec(cifar10_record);
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t got = std::fread(rec.data(), 1, cifar10_record, file.in.get());
        if (got != cifar10_record)
            throw DataError(concat("CIFAR-10 file '", file.path.string(), "': truncated: expected ",
                                   count * cifar10_record, " bytes, got ", i * cifar10_record + got));
        if (rec[0] >= cifar10_classes)
            throw DataError(concat("CIFAR-10 file '", file.path.string(), "': label ", unsigned{rec[0]},
                                   " of record ", i, " is out of range [0, ", cifar10_classes, ")"));
        const std::size_t row = first + i;
        d.labels[row] = rec[0];
        float* dst = d.features.data() + row * cifar10_pixels;
        for (std::size_t k = 0; k < cifar10_pixels; ++k) dst[k] = scale[rec[1 + k]];
    }
}

} // namespace detail

/// Loads one CIFAR-10 binary batch file: sample_shape {3, 32, 32} (channel-major), pixels / 255,
/// 10 classes. `limit` > 0 keeps the first `limit` records (the file size is still checked).
/// @throws DataError: missing, empty, size not a multiple of 3073, or a label above 9.
inline Dataset load_cifar10_file(const std::filesystem::path& path, std::size_t limit = 0) {
    const detail::Cifar10File file = detail::open_cifar10(path);
    const std::size_t n = limit ? std::min(limit, file.records) : file.records;
    Dataset d = detail::make_dataset(n, {3, 32, 32}, cifar10_classes);
    detail::read_cifar10_records(file, n, d, 0);
    return d;
}

/// Loads the CIFAR-10 training set (data_batch_1..5.bin concatenated in order) or the test set
/// (test_batch.bin) from `dir`, or from `dir`/cifar-10-batches-bin as the archive unpacks.
inline Dataset load_cifar10(const std::filesystem::path& dir, bool train = true, std::size_t limit = 0) {
    detail::require_directory(dir, "CIFAR-10 directory", detail::cifar10_hint);
    std::error_code ec;
    std::filesystem::path root = dir;
    const char* probe = train ? "data_batch_1.bin" : "test_batch.bin";
    if (!std::filesystem::exists(root / probe, ec) &&
        std::filesystem::is_directory(dir / "cifar-10-batches-bin", ec))
        root = dir / "cifar-10-batches-bin";

    // Open and check every file before reading any, so a missing fifth batch fails fast.
    std::vector<detail::Cifar10File> opened;
    std::size_t total = 0;
    auto open = [&](const std::filesystem::path& f) {
        opened.push_back(detail::open_cifar10(f));
        total += opened.back().records;
    };
    if (train)
        for (int b = 1; b <= 5; ++b) open(root / ("data_batch_" + std::to_string(b) + ".bin"));
    else
        open(root / "test_batch.bin");
    const std::size_t n = limit ? std::min(limit, total) : total;
    Dataset d = detail::make_dataset(n, {3, 32, 32}, cifar10_classes);
    std::size_t row = 0;
    for (std::size_t i = 0; i < opened.size() && row < n; ++i) {
        const std::size_t take = std::min(opened[i].records, n - row);
        detail::read_cifar10_records(opened[i], take, d, row);
        row += take;
    }
    return d;
}

} // namespace pardl
