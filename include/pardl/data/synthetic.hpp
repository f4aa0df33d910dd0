// Deterministic synthetic datasets (Gaussian blobs, linear regression, class-patterned images)
// for tests and examples, and writers of IDX and CIFAR-10 files used to test the readers.
// Everything is drawn from pardl::Rng, so the same seed gives the same bits on every platform.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/core/rng.hpp"
#include "pardl/data/dataset.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <vector>

namespace pardl {

/// `classes` Gaussian clusters in `features` dimensions (unit noise, centres about 3 apart per
/// axis and kept at least 4 apart when possible), labels i % classes, so classes are balanced and
/// (nearly) separable. sample_shape {features}.
inline Dataset make_blobs(std::size_t rows, std::size_t features, std::size_t classes, std::uint64_t seed) {
    PARDL_REQUIRE(features > 0 && classes > 0, ConfigError,
                  "make_blobs: features and classes must be positive");
    Rng crng(seed, 1);
    std::vector<float> centres(detail::size_product(classes, features, "make_blobs: the class centres"));
    const auto dist2 = [&](const float* a, const float* b) {
        float s = 0;
        for (std::size_t f = 0; f < features; ++f) s += (a[f] - b[f]) * (a[f] - b[f]);
        return s;
    };
    std::vector<float> cand(features), best(features);
    for (std::size_t k = 0; k < classes; ++k) {
        float best_gap = -1;
        for (int attempt = 0; attempt < 64; ++attempt) {
            for (auto& v : cand) v = 3.0f * crng.normal();
            float gap = std::numeric_limits<float>::max();
            for (std::size_t j = 0; j < k; ++j)
                gap = std::min(gap, dist2(cand.data(), &centres[j * features]));
            if (gap > best_gap) {
                best_gap = gap;
                best = cand;
            }
            if (gap >= 16.0f) break;
        }
        std::copy(best.begin(), best.end(), centres.begin() + static_cast<std::ptrdiff_t>(k * features));
    }
    Dataset d = detail::make_dataset(rows, {features}, classes);
    Rng rng(seed, 2);
    for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t k = i % classes;
        d.labels[i] = static_cast<std::int32_t>(k);
        for (std::size_t f = 0; f < features; ++f)
            d.features[i * features + f] = centres[k * features + f] + rng.normal();
    }
    return d;
}

/// Linear regression data: x ~ N(0, 1), targets = x W + b + 0.01 noise with W ~ N(0, 1/features).
/// labels are all 0 and classes is 0 (not a classification set); sample_shape {features}.
inline Dataset make_regression(std::size_t rows, std::size_t features, std::size_t outputs,
                               std::uint64_t seed) {
    PARDL_REQUIRE(features > 0 && outputs > 0, ConfigError,
                  "make_regression: features and outputs must be positive");
    Rng wrng(seed, 1);
    std::vector<float> w(detail::size_product(features, outputs, "make_regression: the weights")), b(outputs);
    const float ws = 1.0f / std::sqrt(static_cast<float>(features));
    for (auto& v : w) v = ws * wrng.normal();
    for (auto& v : b) v = 0.5f * wrng.normal();
    Dataset d = detail::make_dataset(rows, {features}, 0, outputs);
    Rng rng(seed, 2);
    for (std::size_t i = 0; i < rows; ++i) {
        float* x = d.features.data() + i * features;
        for (std::size_t f = 0; f < features; ++f) x[f] = rng.normal();
        for (std::size_t o = 0; o < outputs; ++o) {
            float s = b[o];
            for (std::size_t f = 0; f < features; ++f) s += x[f] * w[f * outputs + o];
            d.targets[i * outputs + o] = s + 0.01f * rng.normal();
        }
    }
    return d;
}

/// Images in [0, 1] of shape {channels, h, w}: each class has its own smooth template (a random
/// coarse grid of up to 4x4 intensities per channel, bilinearly upsampled), and each sample is its
/// class template plus a random brightness shift and pixel noise. Labels i % classes.
inline Dataset make_images(std::size_t rows, std::size_t channels, std::size_t h, std::size_t w,
                           std::size_t classes, std::uint64_t seed) {
    PARDL_REQUIRE(channels > 0 && h > 0 && w > 0 && classes > 0, ConfigError,
                  "make_images: channels, h, w and classes must be positive");
    const std::size_t gh = std::min<std::size_t>(4, h), gw = std::min<std::size_t>(4, w);
    const std::size_t plane = detail::size_product(h, w, "make_images: an image plane");
    const std::size_t cols = detail::size_product(channels, plane, "make_images: an image");
    std::vector<float> templates(detail::size_product(classes, cols, "make_images: the class templates"));
    std::vector<float> grid(gh * gw);
    for (std::size_t k = 0; k < classes; ++k) {
        Rng trng(seed, 1000 + k);
        for (std::size_t c = 0; c < channels; ++c) {
            for (auto& v : grid) v = trng.uniform(0.1f, 0.9f);
            float* t = &templates[k * cols + c * plane];
            for (std::size_t y = 0; y < h; ++y) {
                const float gy =
                    h > 1 ? static_cast<float>(y) * static_cast<float>(gh - 1) / static_cast<float>(h - 1)
                          : 0;
                const std::size_t y0 = std::min(static_cast<std::size_t>(gy), gh - 1),
                                  y1 = std::min(y0 + 1, gh - 1);
                const float fy = gy - static_cast<float>(y0);
                for (std::size_t x = 0; x < w; ++x) {
                    const float gx =
                        w > 1 ? static_cast<float>(x) * static_cast<float>(gw - 1) / static_cast<float>(w - 1)
                              : 0;
                    const std::size_t x0 = std::min(static_cast<std::size_t>(gx), gw - 1),
                                      x1 = std::min(x0 + 1, gw - 1);
                    const float fx = gx - static_cast<float>(x0);
                    const float top = grid[y0 * gw + x0] * (1 - fx) + grid[y0 * gw + x1] * fx;
                    const float bot = grid[y1 * gw + x0] * (1 - fx) + grid[y1 * gw + x1] * fx;
                    t[y * w + x] = top * (1 - fy) + bot * fy;
                }
            }
        }
    }
    Dataset d = detail::make_dataset(rows, {channels, h, w}, classes);
    Rng rng(seed, 2);
    for (std::size_t i = 0; i < rows; ++i) {
        const std::size_t k = i % classes;
        d.labels[i] = static_cast<std::int32_t>(k);
        const float shift = rng.uniform(-0.1f, 0.1f);
        const float* t = &templates[k * cols];
        float* x = d.features.data() + i * cols;
        for (std::size_t j = 0; j < cols; ++j)
            x[j] = std::clamp(t[j] + shift + 0.1f * rng.normal(), 0.0f, 1.0f);
    }
    return d;
}

/// Writes `bytes` to `path` as is, or gzip-compressed. @throws DataError when writing fails.
inline void write_raw_file(const std::filesystem::path& path, std::span<const std::uint8_t> bytes,
                           bool gzip = false) {
    if (gzip) {
        gzFile f = gzopen(path.string().c_str(), "wb");
        if (!f) throw DataError(detail::concat("cannot create '", path.string(), "'"));
        std::size_t done = 0;
        bool ok = true;
        while (ok && done < bytes.size()) {
            const auto chunk =
                static_cast<unsigned>(std::min<std::size_t>(bytes.size() - done, std::size_t{1} << 30));
            ok = gzwrite(f, bytes.data() + done, chunk) == static_cast<int>(chunk);
            done += chunk;
        }
        if (gzclose(f) != Z_OK || !ok) throw DataError(detail::concat("cannot write '", path.string(), "'"));
        return;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw DataError(detail::concat("cannot create '", path.string(), "'"));
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw DataError(detail::concat("cannot write '", path.string(), "'"));
}

/// The bytes of an unsigned-byte IDX file: magic 0x000008NN (NN = dims.size()), big-endian dims,
/// then `bytes`. @throws ConfigError unless the dims multiply to bytes.size().
inline std::vector<std::uint8_t> encode_idx(const std::vector<std::size_t>& dims,
                                            std::span<const std::uint8_t> bytes) {
    PARDL_REQUIRE(!dims.empty() && dims.size() < 256, ConfigError, "encode_idx: 1 to 255 dimensions");
    std::size_t total = 1;
    for (std::size_t v : dims) {
        PARDL_REQUIRE(v <= 0xFFFFFFFFu, ConfigError, "encode_idx: dimension ", v, " does not fit 32 bits");
        total *= v;
    }
    PARDL_REQUIRE(total == bytes.size(), ConfigError, "encode_idx: dims hold ", total, " bytes, got ",
                  bytes.size());
    std::vector<std::uint8_t> out;
    out.reserve(4 + 4 * dims.size() + bytes.size());
    const auto put32 = [&](std::uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
    };
    put32(0x800u + static_cast<std::uint32_t>(dims.size()));
    for (std::size_t v : dims) put32(static_cast<std::uint32_t>(v));
    out.insert(out.end(), bytes.begin(), bytes.end());
    return out;
}

/// Writes an unsigned-byte IDX file (see encode_idx), gzip-compressed when `gzip`.
inline void write_idx(const std::filesystem::path& path, const std::vector<std::size_t>& dims,
                      std::span<const std::uint8_t> bytes, bool gzip) {
    write_raw_file(path, encode_idx(dims, bytes), gzip);
}

/// Writes a CIFAR-10 binary file: for each record its label byte then its 3072 pixel bytes
/// (pixels holds the records' pixels back to back). Labels are written unchecked so that tests
/// can make bad files. @throws ConfigError unless pixels.size() == 3072 * labels.size().
inline void write_cifar10(const std::filesystem::path& path, std::span<const std::uint8_t> labels,
                          std::span<const std::uint8_t> pixels) {
    constexpr std::size_t px = 3 * 32 * 32;
    PARDL_REQUIRE(pixels.size() == labels.size() * px, ConfigError, "write_cifar10: ", labels.size(),
                  " labels need ", labels.size() * px, " pixel bytes, got ", pixels.size());
    std::vector<std::uint8_t> out;
    out.reserve(labels.size() * (px + 1));
    for (std::size_t i = 0; i < labels.size(); ++i) {
        out.push_back(labels[i]);
        out.insert(out.end(), pixels.begin() + static_cast<std::ptrdiff_t>(i * px),
                   pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * px));
    }
    write_raw_file(path, out, false);
}

} // namespace pardl
