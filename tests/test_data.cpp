// Tests of the data layer: IDX and CIFAR-10 readers (round trips, every validation failure, a
// bounded fuzz loop), the deterministic BatchLoader, the synthetic generators and, when the Debian
// package is installed, the real Fashion-MNIST files.
#include "pardl/data/data.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h> // mkfifo

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using pardl::ConfigError;
using pardl::DataError;

namespace {

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<unsigned> counter{0};
        const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
        path = fs::temp_directory_path() / ("pardl_test_data_" + std::to_string(std::random_device{}()) +
                                            "_" + std::to_string(stamp) + "_" + std::to_string(counter++));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    fs::path operator/(const std::string& name) const { return path / name; }
};

std::vector<std::uint8_t> pattern_bytes(std::size_t n, std::uint64_t seed) {
    std::vector<std::uint8_t> v(n);
    pardl::Rng rng(seed);
    for (auto& b : v) b = static_cast<std::uint8_t>(rng.next() >> 56);
    return v;
}

std::vector<std::uint8_t> slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs fn; passes if it returns or throws DataError, fails on any other exception.
template <class Fn>
void only_data_error(Fn&& fn, const std::string& what) {
    try {
        fn();
    } catch (const DataError&) {
    } catch (const std::exception& e) {
        FAIL(what << ": threw a non-DataError exception: " << e.what());
    } catch (...) {
        FAIL(what << ": threw a non-standard exception");
    }
}

} // namespace

#define REQUIRE_DATA_ERROR(expr, name, reason)                                                               \
    do {                                                                                                     \
        REQUIRE_THROWS_AS(expr, DataError);                                                                  \
        REQUIRE_THROWS_WITH(expr, Catch::Contains(name) && Catch::Contains(reason));                         \
    } while (false)

// ---------------------------------------------------------------------------------------------
// Dataset

TEST_CASE("Dataset views and head copy", "[data]") {
    pardl::Dataset d = pardl::make_blobs(10, 3, 2, 1);
    REQUIRE(d.rows == 10);
    REQUIRE(d.cols == 3);
    REQUIRE(d.sample_shape == std::vector<std::size_t>{3});
    REQUIRE(d.x().rows == 10);
    REQUIRE(d.x().cols == 3);
    REQUIRE(d.y().size() == 10);
    REQUIRE(d.t().empty());
    REQUIRE_FALSE(d.has_targets());

    const pardl::Dataset h = d.head(4);
    REQUIRE(h.rows == 4);
    REQUIRE(h.classes == 2);
    REQUIRE(h.features.data() != d.features.data());
    for (std::size_t i = 0; i < 4 * 3; ++i) REQUIRE(h.features[i] == d.features[i]);
    for (std::size_t i = 0; i < 4; ++i) REQUIRE(h.labels[i] == d.labels[i]);
    REQUIRE(d.head(100).rows == 10);
    REQUIRE(d.head(0).rows == 0);

    const pardl::Dataset r = pardl::make_regression(6, 4, 2, 3);
    REQUIRE(r.has_targets());
    const pardl::Dataset rh = r.head(3);
    REQUIRE(rh.t().rows == 3);
    REQUIRE(rh.t().cols == 2);
    for (std::size_t i = 0; i < 3 * 2; ++i) REQUIRE(rh.targets[i] == r.targets[i]);
}

// ---------------------------------------------------------------------------------------------
// IDX

TEST_CASE("IDX round trip, gzip and plain", "[data][idx]") {
    TempDir tmp;
    const std::size_t n = 5, h = 4, w = 3;
    const auto pixels = pattern_bytes(n * h * w, 7);
    const std::vector<std::uint8_t> labels{3, 0, 9, 1, 4};

    for (bool gz : {false, true}) {
        CAPTURE(gz);
        const auto img = tmp / (gz ? "img.gz" : "img.idx");
        const auto lab = tmp / (gz ? "lab.gz" : "lab.idx");
        pardl::write_idx(img, {n, h, w}, pixels, gz);
        pardl::write_idx(lab, {n}, labels, gz);
        const auto raw = slurp(img);
        REQUIRE(raw.size() >= 2);
        REQUIRE((raw[0] == 0x1f && raw[1] == 0x8b) == gz);

        const pardl::IdxArray a = pardl::read_idx(img);
        REQUIRE(a.dims == std::vector<std::size_t>{n, h, w});
        REQUIRE(a.data == pixels);
        REQUIRE(a.items() == n);
        REQUIRE(a.item_size() == h * w);
        REQUIRE(pardl::read_idx(lab, 1).data == labels);

        const pardl::Dataset d = pardl::load_idx_pair(img, lab);
        REQUIRE(d.rows == n);
        REQUIRE(d.cols == h * w);
        REQUIRE(d.classes == 10);
        REQUIRE(d.sample_shape == std::vector<std::size_t>{1, h, w});
        for (std::size_t i = 0; i < pixels.size(); ++i)
            REQUIRE(d.features[i] == static_cast<float>(pixels[i]) / 255.0f);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(d.labels[i] == labels[i]);

        const pardl::Dataset lim = pardl::load_idx_pair(img, lab, 2);
        REQUIRE(lim.rows == 2);
        REQUIRE(lim.labels[1] == 0);
        REQUIRE(pardl::load_idx_pair(img, lab, 100).rows == n);
    }
}

TEST_CASE("IDX pixel scaling covers [0, 1] exactly", "[data][idx]") {
    TempDir tmp;
    std::vector<std::uint8_t> px(256);
    std::iota(px.begin(), px.end(), 0);
    pardl::write_idx(tmp / "i", {4, 8, 8}, px, false);
    pardl::write_idx(tmp / "l", {4}, std::vector<std::uint8_t>{0, 1, 2, 3}, false);
    const auto d = pardl::load_idx_pair(tmp / "i", tmp / "l");
    REQUIRE(d.features[0] == 0.0f);
    REQUIRE(d.features[255] == 1.0f);
}

TEST_CASE("IDX validation failures throw DataError naming the file and the reason", "[data][idx]") {
    TempDir tmp;
    const auto pixels = pattern_bytes(5 * 4 * 3, 11);
    const std::vector<std::uint8_t> labels{1, 2, 3, 4, 5};
    const auto good = pardl::encode_idx({5, 4, 3}, pixels); // 16 header bytes + 60 data bytes
    pardl::write_idx(tmp / "labels.idx", {5}, labels, false);
    const auto lab = tmp / "labels.idx";

    SECTION("missing file") {
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "nope.idx"), "nope.idx", "not found");
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "nope.idx", lab), "nope.idx", "not found");
    }
    SECTION("unreadable: a directory") {
        fs::create_directory(tmp / "adir");
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "adir"), "adir", "unreadable");
    }
    SECTION("unreadable: no permission") {
        pardl::write_raw_file(tmp / "locked.idx", good);
        fs::permissions(tmp / "locked.idx", fs::perms::none);
        const bool can_open = static_cast<bool>(std::ifstream(tmp / "locked.idx"));
        if (!can_open) // root reads anything; then there is nothing to test
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "locked.idx"), "locked.idx", "unreadable");
        fs::permissions(tmp / "locked.idx", fs::perms::owner_all);
    }
    SECTION("empty file") {
        pardl::write_raw_file(tmp / "empty.idx", {});
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "empty.idx"), "empty.idx", "empty file");
        pardl::write_raw_file(tmp / "empty.gz", {}, true);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "empty.gz"), "empty.gz", "empty file");
    }
    SECTION("wrong magic") {
        auto bad = good;
        bad[0] = 0x12;
        bad[1] = 0x34;
        pardl::write_raw_file(tmp / "magic.idx", bad);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "magic.idx", 3), "magic.idx",
                           "wrong magic number: expected 0x00000803, found 0x12340803");
        // A label file where an image file belongs, and the reverse.
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(lab, lab), "labels.idx",
                           "expected 0x00000803, found 0x00000801");
        pardl::write_raw_file(tmp / "images.idx", good);
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "images.idx", tmp / "images.idx"), "images.idx",
                           "expected 0x00000801, found 0x00000803");
        // Text file.
        const std::string text = "hello, this is not IDX";
        pardl::write_raw_file(tmp / "text.idx", std::vector<std::uint8_t>(text.begin(), text.end()));
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "text.idx"), "text.idx", "wrong magic number");
    }
    SECTION("unsupported data type byte") {
        auto bad = good;
        bad[2] = 0x0D; // float
        pardl::write_raw_file(tmp / "type.idx", bad);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "type.idx"), "type.idx", "unsupported data type byte 0x0D");
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "type.idx"), "type.idx", "only 0x08");
    }
    SECTION("zero dimension") {
        auto bad = good;
        bad[8 + 3] = 0; // dims[1] = 0
        pardl::write_raw_file(tmp / "zero.idx", bad);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "zero.idx"), "zero.idx", "zero dimension");
        std::vector<std::uint8_t> nodims{0, 0, 8, 0};
        pardl::write_raw_file(tmp / "nodims.idx", nodims);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "nodims.idx"), "nodims.idx",
                           "absurd number of dimensions: 0");
    }
    SECTION("absurd dimensions") {
        auto bad = good;
        for (std::size_t i = 4; i < 16; ++i) bad[i] = 0xFF; // 3 x (2^32 - 1)
        pardl::write_raw_file(tmp / "huge.idx", bad);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "huge.idx"), "huge.idx", "absurd dimensions");
        // A plausible but wrong size must not allocate what it claims: it is truncated instead.
        auto big = good;
        big[4] = 0x00;
        big[5] = 0x10; // 1048581 images of 4x3
        pardl::write_raw_file(tmp / "big.idx", big);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "big.idx"), "big.idx", "truncated data");
    }
    SECTION("truncated header and data, plain and gzip") {
        for (bool gz : {false, true}) {
            const std::string name = gz ? "trunc.gz" : "trunc.idx";
            pardl::write_raw_file(tmp / name, std::span(good).first(good.size() - 10), gz);
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / name), name, "truncated data");
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / name), name, "promises 60 bytes, got 50");
            pardl::write_raw_file(tmp / name, std::span(good).first(10), gz);
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / name), name,
                               "truncated header: expected 12 bytes of dimensions, got 6");
            pardl::write_raw_file(tmp / name, std::span(good).first(3), gz);
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / name), name,
                               "truncated header: expected 4 magic bytes, got 3");
        }
    }
    SECTION("truncated gzip stream") {
        // A bigger payload so that the compressed stream has a middle to cut.
        const auto big = pattern_bytes(50 * 28 * 28, 5);
        pardl::write_idx(tmp / "full.gz", {50, 28, 28}, big, true);
        const auto z = slurp(tmp / "full.gz");
        pardl::write_raw_file(tmp / "cut.gz", std::span(z).first(z.size() / 2));
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "cut.gz"), "cut.gz", "truncated");
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "cut.gz"), "cut.gz", "gzip stream ends unexpectedly");
        // Data complete, trailer (CRC + length) cut off.
        pardl::write_raw_file(tmp / "notrailer.gz", std::span(z).first(z.size() - 8));
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "notrailer.gz"), "notrailer.gz", "truncated gzip stream");
    }
    SECTION("trailing garbage, plain and gzip") {
        auto bad = good;
        bad.insert(bad.end(), {1, 2, 3, 4, 5, 6, 7});
        for (bool gz : {false, true}) {
            const std::string name = gz ? "trail.gz" : "trail.idx";
            pardl::write_raw_file(tmp / name, bad, gz);
            REQUIRE_DATA_ERROR(pardl::read_idx(tmp / name), name,
                               "trailing garbage: 7 bytes after the 60 data bytes");
        }
    }
    SECTION("corrupt gzip stream") {
        pardl::write_raw_file(tmp / "ok.gz", good, true);
        const auto z = slurp(tmp / "ok.gz");
        auto crc = z;
        crc[crc.size() - 8] ^= 0xFF; // CRC-32 in the trailer
        pardl::write_raw_file(tmp / "crc.gz", crc);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "crc.gz"), "crc.gz", "corrupt gzip stream");
        auto method = z;
        method[2] = 7; // compression method other than deflate
        pardl::write_raw_file(tmp / "method.gz", method);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "method.gz"), "method.gz", "corrupt gzip stream");
        auto body = z;
        for (std::size_t i = 10; i < body.size() - 8; ++i) body[i] = 0xFF; // invalid deflate blocks
        pardl::write_raw_file(tmp / "body.gz", body);
        REQUIRE_DATA_ERROR(pardl::read_idx(tmp / "body.gz"), "body.gz", "corrupt gzip stream");
    }
    SECTION("image and label counts differ") {
        pardl::write_raw_file(tmp / "images.idx", good);
        pardl::write_idx(tmp / "four.idx", {4}, std::vector<std::uint8_t>{0, 1, 2, 3}, false);
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "images.idx", tmp / "four.idx"), "images.idx",
                           "holds 5 images but labels file");
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "images.idx", tmp / "four.idx"), "four.idx",
                           "holds 4 labels");
    }
    SECTION("label out of range") {
        pardl::write_raw_file(tmp / "images.idx", good);
        pardl::write_idx(tmp / "badlab.idx", {5}, std::vector<std::uint8_t>{0, 1, 10, 3, 4}, false);
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "images.idx", tmp / "badlab.idx"), "badlab.idx",
                           "label 10 at index 2 is out of range [0, 10)");
        REQUIRE_DATA_ERROR(pardl::load_idx_pair(tmp / "images.idx", lab, 0, 5), "labels.idx",
                           "label 5 at index 4 is out of range [0, 5)");
        REQUIRE(pardl::load_idx_pair(tmp / "images.idx", lab, 0, 6).classes == 6);
    }
}

TEST_CASE("IDX gzip: every member's trailer is checked and nothing may follow the payload", "[data][idx]") {
    TempDir tmp;
    // Big enough that the old gzread-based reader finished the payload with a direct inflate into
    // the caller's buffer, which took in a cut trailer and then reported a clean end (zlib 1.2.13);
    // the 784000 bytes of the 1000-image file in the review's reproduction.
    const std::vector<std::size_t> shape{1000, 28, 28};
    const auto pixels = pattern_bytes(1000 * 28 * 28, 21);
    pardl::write_idx(tmp / "full.gz", shape, pixels, true);
    const auto z = slurp(tmp / "full.gz");
    REQUIRE(pardl::read_idx(tmp / "full.gz", 3).data == pixels);
    const auto write = [&](const std::string& name, const std::vector<std::uint8_t>& bytes) {
        pardl::write_raw_file(tmp / name, bytes);
        return tmp / name;
    };

    SECTION("trailer cut by 1 to 8 bytes, or the data cut too") {
        for (std::size_t cut = 1; cut <= 12; ++cut) {
            CAPTURE(cut);
            const auto f = write("cut.gz", std::vector<std::uint8_t>(z.begin(), z.end() - cut));
            if (cut <= 8)
                REQUIRE_DATA_ERROR(pardl::read_idx(f), "cut.gz",
                                   "truncated gzip stream: the data is complete but the gzip trailer "
                                   "(CRC-32 and length) is missing or cut short");
            else
                REQUIRE_DATA_ERROR(pardl::read_idx(f), "cut.gz", "the gzip stream ends unexpectedly");
        }
    }
    SECTION("a CRC-32 or length that does not match the data") {
        auto crc = z;
        crc[crc.size() - 6] ^= 0x01;
        REQUIRE_DATA_ERROR(pardl::read_idx(write("crc.gz", crc)), "crc.gz",
                           "corrupt gzip stream (zlib: incorrect data check)");
        auto len = z;
        len[len.size() - 3] ^= 0x01;
        REQUIRE_DATA_ERROR(pardl::read_idx(write("len.gz", len)), "len.gz",
                           "corrupt gzip stream (zlib: incorrect length check)");
        // Changed data under the original trailer: only the CRC can tell.
        std::vector<std::uint8_t> other = pixels;
        other[1000] ^= 0xFF;
        pardl::write_idx(tmp / "other.gz", shape, other, true);
        auto swapped = slurp(tmp / "other.gz");
        std::copy(z.end() - 8, z.end(), swapped.end() - 8);
        REQUIRE_DATA_ERROR(pardl::read_idx(write("swapped.gz", swapped)), "swapped.gz",
                           "incorrect data check");
    }
    SECTION("bytes after the gzip stream that are not gzip") {
        const std::string junk = "garbage!!";
        auto text = z;
        text.insert(text.end(), junk.begin(), junk.end());
        REQUIRE_DATA_ERROR(pardl::read_idx(write("text.gz", text)), "text.gz",
                           "trailing garbage: 9 bytes after the end of the gzip stream are not gzip data");
        auto zeros = z;
        zeros.resize(zeros.size() + 1000, 0);
        REQUIRE_DATA_ERROR(pardl::read_idx(write("zeros.gz", zeros)), "zeros.gz",
                           "trailing garbage: 1000 bytes after the end of the gzip stream");
        auto one = z;
        one.push_back(0x1f); // half a gzip magic
        REQUIRE_DATA_ERROR(pardl::read_idx(write("one.gz", one)), "one.gz", "trailing garbage: 1 bytes");
    }
    SECTION("concatenated members are one stream, each checked, none adding bytes") {
        const auto encoded = pardl::encode_idx(shape, pixels);
        const std::size_t split = encoded.size() / 3; // inside the pixels
        pardl::write_raw_file(tmp / "a.gz", std::span(encoded).first(split), true);
        pardl::write_raw_file(tmp / "b.gz", std::span(encoded).subspan(split), true);
        pardl::write_raw_file(tmp / "empty.gz", {}, true);
        const auto a = slurp(tmp / "a.gz"), b = slurp(tmp / "b.gz"), e = slurp(tmp / "empty.gz");
        const auto join = [](std::initializer_list<const std::vector<std::uint8_t>*> parts) {
            std::vector<std::uint8_t> v;
            for (const auto* p : parts) v.insert(v.end(), p->begin(), p->end());
            return v;
        };
        REQUIRE(pardl::read_idx(write("ab.gz", join({&a, &b})), 3).data == pixels);
        REQUIRE(pardl::read_idx(write("abe.gz", join({&a, &b, &e})), 3).data == pixels);
        // The CRC of the first member, not only the last, is checked.
        auto bad_a = a;
        bad_a[bad_a.size() - 6] ^= 0x01;
        REQUIRE_DATA_ERROR(pardl::read_idx(write("bad_a.gz", join({&bad_a, &b}))), "bad_a.gz",
                           "incorrect data check");
        // A further member with data is more data than the header promises.
        REQUIRE_DATA_ERROR(pardl::read_idx(write("aba.gz", join({&a, &b, &a}))), "aba.gz",
                           "trailing garbage: " + std::to_string(split) + " bytes after the " +
                               std::to_string(pixels.size()) + " data bytes");
        // A last member cut short, in its trailer or its data.
        const auto cut_b = std::vector<std::uint8_t>(b.begin(), b.end() - 4);
        REQUIRE_DATA_ERROR(pardl::read_idx(write("acut.gz", join({&a, &cut_b}))), "acut.gz",
                           "truncated gzip stream");
        const auto cut_e = std::vector<std::uint8_t>(e.begin(), e.end() - 4);
        REQUIRE_DATA_ERROR(pardl::read_idx(write("abcut.gz", join({&a, &b, &cut_e}))), "abcut.gz",
                           "truncated gzip stream");
    }
    SECTION("plain files: the payload must end the file") {
        auto plain = pardl::encode_idx(shape, pixels);
        plain.push_back(0);
        REQUIRE_DATA_ERROR(pardl::read_idx(write("plain.idx", plain)), "plain.idx",
                           "trailing garbage: 1 bytes after the 784000 data bytes");
    }
}

TEST_CASE("Real Fashion-MNIST with its gzip trailer cut is refused", "[data][fashion]") {
    const fs::path real = fs::path(pardl::default_fashion_mnist_dir) / "train-images-idx3-ubyte.gz";
    std::error_code ec;
    if (!fs::exists(real, ec)) {
        WARN("Fashion-MNIST not installed in " << real << "; skipping");
        SUCCEED();
        return;
    }
    TempDir tmp;
    const auto copy = tmp / "train-images-idx3-ubyte.gz";
    fs::copy_file(real, copy);
    fs::resize_file(copy, fs::file_size(copy) - 8); // `truncate -s -8`: the trailer gone
    REQUIRE_DATA_ERROR(pardl::read_idx(copy, 3), copy.string(),
                       "gzip trailer (CRC-32 and length) is missing");
}

TEST_CASE("same_file: one file under any name, and a file not yet written by its path", "[data][files]") {
    using pardl::detail::same_file;
    TempDir tmp;
    fs::create_directories(tmp / "sub");
    { std::ofstream(tmp / "a") << "a"; }
    { std::ofstream(tmp / "b") << "a"; } // the same bytes, another file
    fs::create_hard_link(tmp / "a", tmp / "hard");
    fs::create_symlink(tmp / "a", tmp / "soft");
    CHECK(same_file(tmp / "a", tmp / "a"));
    CHECK(same_file(tmp / "a", tmp / "hard"));
    CHECK(same_file(tmp / "soft", tmp / "a"));
    CHECK(same_file(tmp / "sub/../a", tmp / "a"));
    CHECK_FALSE(same_file(tmp / "a", tmp / "b"));
    // Not written yet: the same path however spelt, and no other.
    CHECK(same_file(tmp / "sub/../new", tmp / "new"));
    CHECK(same_file(tmp / "new", tmp / "new"));
    CHECK_FALSE(same_file(tmp / "new", tmp / "a"));
    CHECK_FALSE(same_file(tmp / "new", tmp / "sub/new"));
    // Relative to the working folder, as a flag gives it.
    const fs::path here = fs::current_path();
    fs::current_path(tmp.path);
    const bool relative = same_file("a", tmp / "a") && same_file("./new", tmp / "new");
    fs::current_path(here);
    CHECK(relative);
}

TEST_CASE("Fashion-MNIST directory layout and missing files", "[data][idx]") {
    TempDir tmp;
    SECTION("missing directory mentions the Debian package and --data") {
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp / "absent"), "absent", "dataset-fashion-mnist");
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp / "absent"), "absent", "--data DIR");
    }
    SECTION("missing file names it") {
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp.path, true), "train-images-idx3-ubyte",
                           "install the Debian package dataset-fashion-mnist or give the directory");
        pardl::write_idx(tmp / "t10k-images-idx3-ubyte", {2, 2, 2}, pattern_bytes(8, 1), false);
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp.path, false), "t10k-labels-idx1-ubyte", "not found");
    }
    SECTION("plain and gzip names, gzip preferred") {
        pardl::write_idx(tmp / "train-images-idx3-ubyte", {3, 28, 28}, pattern_bytes(3 * 784, 1), false);
        pardl::write_idx(tmp / "train-labels-idx1-ubyte", {3}, std::vector<std::uint8_t>{1, 2, 3}, false);
        REQUIRE(pardl::load_fashion_mnist(tmp.path, true).rows == 3);
        pardl::write_idx(tmp / "train-images-idx3-ubyte.gz", {4, 28, 28}, pattern_bytes(4 * 784, 2), true);
        pardl::write_idx(tmp / "train-labels-idx1-ubyte.gz", {4}, std::vector<std::uint8_t>{4, 5, 6, 7},
                         true);
        const auto d = pardl::load_fashion_mnist(tmp.path, true);
        REQUIRE(d.rows == 4);
        REQUIRE(d.labels[3] == 7);
        REQUIRE(pardl::load_fashion_mnist(tmp.path, true, 2).rows == 2);
        pardl::write_idx(tmp / "t10k-images-idx3-ubyte.gz", {2, 28, 28}, pattern_bytes(2 * 784, 3), true);
        pardl::write_idx(tmp / "t10k-labels-idx1-ubyte", {2}, std::vector<std::uint8_t>{0, 9}, false);
        REQUIRE(pardl::load_fashion_mnist(tmp.path, false).rows == 2);
    }
    SECTION("a file given as the directory is not called missing") {
        pardl::write_idx(tmp / "train-images-idx3-ubyte.gz", {1, 28, 28}, pattern_bytes(784, 1), true);
        const auto file = tmp / "train-images-idx3-ubyte.gz";
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(file), file.string(),
                           "is not a directory (it is a regular file)");
        REQUIRE_THROWS_WITH(pardl::load_fashion_mnist(file), !Catch::Contains("not found"));
        REQUIRE_DATA_ERROR(pardl::load_cifar10(file), file.string(), "is not a directory");
    }
    SECTION("images must be 28x28, the generic reader takes any shape") {
        for (const std::vector<std::size_t>& shape :
             {std::vector<std::size_t>{2, 14, 56}, std::vector<std::size_t>{2, 784, 1},
              std::vector<std::size_t>{2, 27, 27}}) {
            const std::string found = std::to_string(shape[1]) + "x" + std::to_string(shape[2]);
            CAPTURE(found);
            pardl::write_idx(tmp / "train-images-idx3-ubyte", shape,
                             pattern_bytes(shape[0] * shape[1] * shape[2], 4), false);
            pardl::write_idx(tmp / "train-labels-idx1-ubyte", {2}, std::vector<std::uint8_t>{1, 2}, false);
            REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp.path), "train-images-idx3-ubyte",
                               "images are " + found + " pixels, but Fashion-MNIST's are 28x28");
            REQUIRE(pardl::read_idx(tmp / "train-images-idx3-ubyte", 3).dims == shape);
            REQUIRE(pardl::load_idx_pair(tmp / "train-images-idx3-ubyte", tmp / "train-labels-idx1-ubyte")
                        .sample_shape == std::vector<std::size_t>{1, shape[1], shape[2]});
        }
    }
    SECTION("a FIFO in place of a data file is refused unopened") {
        pardl::write_idx(tmp / "train-labels-idx1-ubyte", {2}, std::vector<std::uint8_t>{1, 2}, false);
        const auto fifo = tmp / "train-images-idx3-ubyte";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0); // opening it for reading would block for ever
        REQUIRE_DATA_ERROR(pardl::read_idx(fifo), fifo.string(),
                           "unreadable: it is a FIFO, not a regular file");
        REQUIRE_DATA_ERROR(pardl::load_fashion_mnist(tmp.path), fifo.string(), "it is a FIFO");
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(fifo), fifo.string(), "it is a FIFO");
        // The readers also check the file they opened (open_regular_file), for a FIFO swapped in
        // after the check by name: opened directly, a FIFO is refused without waiting for a writer
        // (without O_NONBLOCK this call would hang here until ctest's timeout).
        std::string why;
        std::uintmax_t size = 99;
        CHECK(pardl::detail::open_regular_file(fifo, why, &size) == nullptr);
        CHECK(why == "it is a FIFO, not a regular file");
        CHECK(size == 99);
        CHECK(pardl::detail::open_regular_file(tmp.path, why) == nullptr);
        CHECK(why == "it is a directory, not a regular file");
        CHECK(pardl::detail::open_regular_file("/dev/null", why) == nullptr);
        CHECK_THAT(why, Catch::Contains("not a regular file"));
        CHECK(pardl::detail::open_regular_file(tmp / "absent", why) == nullptr);
        CHECK(why == "file not found");
        const auto labels = pardl::detail::open_regular_file(tmp / "train-labels-idx1-ubyte", why, &size);
        REQUIRE(labels != nullptr);
        CHECK(size == 8 + 2);                 // the IDX header (magic, one dimension) and two labels
        CHECK(std::fgetc(labels.get()) == 0); // the magic's first byte: it reads
    }
}

TEST_CASE("IDX fuzz: random bytes, truncations and bit flips only ever throw DataError",
          "[data][idx][fuzz]") {
    TempDir tmp;
    pardl::Rng rng(2024);
    const auto f = tmp / "fuzz";
    const auto lab = tmp / "lab";
    pardl::write_idx(lab, {6}, std::vector<std::uint8_t>{0, 1, 2, 3, 4, 5}, false);
    const auto images = pardl::encode_idx({6, 5, 4}, pattern_bytes(6 * 5 * 4, 3));
    const auto try_all = [&](const std::string& what) {
        only_data_error([&] { (void)pardl::read_idx(f); }, what + " read_idx");
        only_data_error([&] { (void)pardl::read_idx(f, 3); }, what + " read_idx(3)");
        only_data_error([&] { (void)pardl::load_idx_pair(f, lab, 0, 10); }, what + " images");
        only_data_error([&] { (void)pardl::load_idx_pair(f, f, 3, 4); }, what + " both");
    };

    SECTION("random bytes, some behind a plausible header") {
        for (int it = 0; it < 200; ++it) {
            std::vector<std::uint8_t> bytes(rng.below(120));
            for (auto& b : bytes) b = static_cast<std::uint8_t>(rng.next());
            if (it % 2 == 0 && bytes.size() >= 4) { // reach the dimension and payload checks
                bytes[0] = bytes[1] = 0;
                bytes[2] = 8;
                bytes[3] = static_cast<std::uint8_t>(1 + rng.below(3));
                for (std::size_t i = 4; i < bytes.size() && i < 16; i += 4)
                    if (i + 2 < bytes.size()) bytes[i] = bytes[i + 1] = bytes[i + 2] = 0; // small dims
            }
            pardl::write_raw_file(f, bytes, it % 3 == 0);
            try_all("random #" + std::to_string(it));
        }
    }
    SECTION("every truncation of a plain and a gzip file") {
        for (std::size_t len = 0; len <= images.size(); ++len) {
            pardl::write_raw_file(f, std::span(images).first(len));
            try_all("plain cut " + std::to_string(len));
        }
        pardl::write_raw_file(tmp / "z", images, true);
        const auto z = slurp(tmp / "z");
        for (std::size_t len = 0; len <= z.size(); ++len) {
            pardl::write_raw_file(f, std::span(z).first(len));
            try_all("gzip cut " + std::to_string(len));
        }
    }
    SECTION("random byte flips of a gzip file") {
        pardl::write_raw_file(tmp / "z", images, true);
        const auto z = slurp(tmp / "z");
        for (int it = 0; it < 200; ++it) {
            auto bad = z;
            const std::size_t flips = 1 + rng.below(3);
            for (std::size_t k = 0; k < flips; ++k)
                bad[rng.below(bad.size())] ^= static_cast<std::uint8_t>(1 + rng.below(255));
            pardl::write_raw_file(f, bad);
            try_all("gzip flip #" + std::to_string(it));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10

TEST_CASE("CIFAR-10 round trip", "[data][cifar10]") {
    TempDir tmp;
    const std::vector<std::uint8_t> labels{0, 9, 5};
    const auto pixels = pattern_bytes(3 * 3072, 9);
    pardl::write_cifar10(tmp / "test_batch.bin", labels, pixels);
    REQUIRE(fs::file_size(tmp / "test_batch.bin") == 3 * 3073);

    const pardl::Dataset d = pardl::load_cifar10_file(tmp / "test_batch.bin");
    REQUIRE(d.rows == 3);
    REQUIRE(d.cols == 3072);
    REQUIRE(d.classes == 10);
    REQUIRE(d.sample_shape == std::vector<std::size_t>{3, 32, 32});
    for (std::size_t i = 0; i < 3; ++i) REQUIRE(d.labels[i] == labels[i]);
    // Channel-major: feature c*1024 + y*32 + x of a row is pixel byte c*1024 + y*32 + x of its record.
    for (std::size_t i = 0; i < pixels.size(); ++i)
        REQUIRE(d.features[i] == static_cast<float>(pixels[i]) / 255.0f);
    REQUIRE(pardl::load_cifar10_file(tmp / "test_batch.bin", 2).rows == 2);

    // Five training batches of two records each: concatenated in order.
    for (int b = 1; b <= 5; ++b) {
        const std::vector<std::uint8_t> l{static_cast<std::uint8_t>(2 * b - 2),
                                          static_cast<std::uint8_t>(2 * b - 1)};
        pardl::write_cifar10(tmp / ("data_batch_" + std::to_string(b) + ".bin"), l,
                             pattern_bytes(2 * 3072, 100 + b));
    }
    const pardl::Dataset train = pardl::load_cifar10(tmp.path, true);
    REQUIRE(train.rows == 10);
    for (std::size_t i = 0; i < 10; ++i) REQUIRE(train.labels[i] == static_cast<std::int32_t>(i));
    const auto b3 = pattern_bytes(2 * 3072, 103);
    REQUIRE(train.features[4 * 3072 + 17] == static_cast<float>(b3[17]) / 255.0f);
    const pardl::Dataset part = pardl::load_cifar10(tmp.path, true, 3); // spans two files
    REQUIRE(part.rows == 3);
    REQUIRE(part.labels[2] == 2);
    REQUIRE(pardl::load_cifar10(tmp.path, false).rows == 3);

    // The layout the archive unpacks to.
    TempDir outer;
    fs::create_directory(outer / "cifar-10-batches-bin");
    fs::copy_file(tmp / "test_batch.bin", outer / "cifar-10-batches-bin" / "test_batch.bin");
    REQUIRE(pardl::load_cifar10(outer.path, false).rows == 3);
}

TEST_CASE("CIFAR-10 validation failures", "[data][cifar10]") {
    TempDir tmp;
    const auto pixels = pattern_bytes(2 * 3072, 4);
    SECTION("missing file and directory") {
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(tmp / "data_batch_1.bin"), "data_batch_1.bin",
                           "not found");
        REQUIRE_DATA_ERROR(pardl::load_cifar10(tmp / "nodir"), "nodir", "not found");
        for (int b : {1, 2, 3, 5})
            pardl::write_cifar10(tmp / ("data_batch_" + std::to_string(b) + ".bin"),
                                 std::vector<std::uint8_t>{1, 2}, pixels);
        REQUIRE_DATA_ERROR(pardl::load_cifar10(tmp.path, true), "data_batch_4.bin", "not found");
        REQUIRE_DATA_ERROR(pardl::load_cifar10(tmp.path, false), "test_batch.bin", "not found");
    }
    SECTION("empty file") {
        pardl::write_raw_file(tmp / "empty.bin", {});
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(tmp / "empty.bin"), "empty.bin", "empty file");
    }
    SECTION("size not a multiple of the record size") {
        auto bytes = pattern_bytes(3073 + 7, 1);
        bytes[0] = 3;
        pardl::write_raw_file(tmp / "odd.bin", bytes);
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(tmp / "odd.bin"), "odd.bin",
                           "size 3080 bytes is not a multiple of the record size 3073");
    }
    SECTION("label above 9") {
        pardl::write_cifar10(tmp / "lab.bin", std::vector<std::uint8_t>{4, 10}, pixels);
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(tmp / "lab.bin"), "lab.bin",
                           "label 10 of record 1 is out of range");
        REQUIRE(pardl::load_cifar10_file(tmp / "lab.bin", 1).rows == 1); // the bad record is not read
    }
    SECTION("unreadable: a directory") {
        fs::create_directory(tmp / "dir.bin");
        REQUIRE_DATA_ERROR(pardl::load_cifar10_file(tmp / "dir.bin"), "dir.bin", "unreadable");
    }
    SECTION("fuzz: random sizes and bytes only throw DataError") {
        pardl::Rng rng(77);
        for (int it = 0; it < 60; ++it) {
            auto bytes = pattern_bytes(rng.below(3 * 3073 + 10), 500 + static_cast<std::uint64_t>(it));
            if (it % 2 == 0) bytes.resize(bytes.size() / 3073 * 3073);
            pardl::write_raw_file(tmp / "f.bin", bytes);
            only_data_error([&] { (void)pardl::load_cifar10_file(tmp / "f.bin"); }, "cifar fuzz");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// BatchLoader

namespace {
std::vector<std::size_t> epoch_order(pardl::BatchLoader& l) {
    std::vector<std::size_t> all;
    for (std::size_t b = 0; b < l.batches_per_epoch(); ++b) {
        const auto idx = l.batch_indices(b);
        all.insert(all.end(), idx.begin(), idx.end());
    }
    return all;
}
} // namespace

TEST_CASE("BatchLoader order depends only on (seed, epoch)", "[data][loader]") {
    const pardl::Dataset d = pardl::make_blobs(100, 2, 3, 1);
    pardl::BatchLoader a(d, 16, 42), b(d, 16, 42), c(d, 16, 43);
    a.start_epoch(3);
    // b walks through earlier epochs first: the history must not matter.
    for (std::size_t e = 0; e <= 3; ++e) b.start_epoch(e);
    REQUIRE(epoch_order(a) == epoch_order(b));
    REQUIRE(a.epoch() == 3);

    const auto e3 = epoch_order(a);
    a.start_epoch(4);
    REQUIRE(epoch_order(a) != e3);
    c.start_epoch(3);
    REQUIRE(epoch_order(c) != e3);
    a.start_epoch(3);
    REQUIRE(epoch_order(a) == e3);

    // Shuffled, not the identity.
    std::vector<std::size_t> id(100);
    std::iota(id.begin(), id.end(), std::size_t{0});
    REQUIRE(e3 != id);

    // The same loader on a copy of the data gives the same order (nothing depends on addresses).
    const pardl::Dataset d2 = d.head(100);
    pardl::BatchLoader a2(d2, 16, 42);
    a2.start_epoch(3);
    REQUIRE(epoch_order(a2) == e3);
}

TEST_CASE("BatchLoader visits every sample exactly once per epoch", "[data][loader]") {
    const pardl::Dataset d = pardl::make_blobs(97, 2, 3, 1);
    pardl::BatchLoader l(d, 10, 5);
    for (std::size_t e = 0; e < 5; ++e) {
        l.start_epoch(e);
        auto all = epoch_order(l);
        REQUIRE(all.size() == 97);
        std::sort(all.begin(), all.end());
        for (std::size_t i = 0; i < 97; ++i) REQUIRE(all[i] == i);
    }
}

TEST_CASE("BatchLoader batch sizes, drop_last and no shuffle", "[data][loader]") {
    const pardl::Dataset d = pardl::make_blobs(10, 2, 2, 1);
    pardl::BatchLoader l(d, 4, 1);
    REQUIRE(l.batches_per_epoch() == 3);
    REQUIRE(l.samples_per_epoch() == 10);
    REQUIRE(l.batch_indices(0).size() == 4);
    REQUIRE(l.batch_indices(1).size() == 4);
    REQUIRE(l.batch_indices(2).size() == 2);
    REQUIRE_THROWS_AS(l.batch_indices(3), ConfigError);

    pardl::BatchLoader dl(d, 4, 1, true, true);
    REQUIRE(dl.batches_per_epoch() == 2);
    REQUIRE(dl.samples_per_epoch() == 8);
    REQUIRE(dl.batch_indices(1).size() == 4);
    REQUIRE_THROWS_AS(dl.batch_indices(2), ConfigError);
    // drop_last drops the same tail of the same permutation: the kept part matches.
    REQUIRE(std::equal(dl.batch_indices(0).begin(), dl.batch_indices(0).end(), l.batch_indices(0).begin()));

    pardl::BatchLoader exact(d, 5, 1, true, true);
    REQUIRE(exact.batches_per_epoch() == 2);
    pardl::BatchLoader big(d, 64, 1);
    REQUIRE(big.batches_per_epoch() == 1);
    REQUIRE(big.batch_indices(0).size() == 10);
    pardl::BatchLoader big_drop(d, 64, 1, true, true);
    REQUIRE(big_drop.batches_per_epoch() == 0);

    pardl::BatchLoader plain(d, 3, 9, false);
    plain.start_epoch(7);
    const auto order = epoch_order(plain);
    for (std::size_t i = 0; i < 10; ++i) REQUIRE(order[i] == i);

    REQUIRE_THROWS_AS(pardl::BatchLoader(d, 0, 1), ConfigError);
}

TEST_CASE("BatchLoader start_epoch reuses its permutation storage", "[data][loader]") {
    const pardl::Dataset d = pardl::make_blobs(50, 2, 2, 1);
    pardl::BatchLoader l(d, 8, 3);
    const std::size_t* p = l.order().data();
    for (std::size_t e = 1; e < 10; ++e) {
        l.start_epoch(e);
        REQUIRE(l.order().data() == p);
        REQUIRE(l.order().size() == 50);
    }
}

TEST_CASE("BatchLoader gathers rows, labels and targets", "[data][loader]") {
    const pardl::Dataset d = pardl::make_regression(20, 3, 2, 8);
    pardl::BatchLoader l(d, 6, 11);
    l.start_epoch(2);
    const auto idx = l.batch_indices(1);

    // Into a strided output (a sub-block of a wider buffer).
    std::vector<float> xs(6 * 5, -1.0f), ts(6 * 2);
    std::vector<std::int32_t> ys(6, -1);
    pardl::Matrix x{xs.data(), 6, 3, 5};
    pardl::Matrix t{ts.data(), 6, 2};
    l.gather(idx, x, ys, t);
    for (std::size_t i = 0; i < idx.size(); ++i) {
        for (std::size_t c = 0; c < 3; ++c) REQUIRE(x(i, c) == d.x()(idx[i], c));
        REQUIRE(xs[i * 5 + 3] == -1.0f); // padding untouched
        for (std::size_t c = 0; c < 2; ++c) REQUIRE(t(i, c) == d.t()(idx[i], c));
        REQUIRE(ys[i] == 0);
    }

    // A rank's slice of the global batch goes into the matching row block.
    std::vector<float> part(3 * 3);
    pardl::BatchLoader::gather_rows(d, idx.subspan(3, 3), pardl::Matrix{part.data(), 3, 3}, {});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t c = 0; c < 3; ++c) REQUIRE(part[i * 3 + c] == d.x()(idx[3 + i], c));

    // batch(): loader-owned storage.
    const pardl::Batch bt = l.batch(3); // the short last batch: 20 = 6 + 6 + 6 + 2
    REQUIRE(bt.rows() == 2);
    REQUIRE(bt.labels.size() == 2);
    REQUIRE(bt.targets.rows == 2);
    const auto last = l.batch_indices(3);
    for (std::size_t i = 0; i < 2; ++i) {
        for (std::size_t c = 0; c < 3; ++c) REQUIRE(bt.x(i, c) == d.x()(last[i], c));
        for (std::size_t c = 0; c < 2; ++c) REQUIRE(bt.targets(i, c) == d.t()(last[i], c));
    }

    const pardl::Dataset cls = pardl::make_blobs(12, 4, 3, 2);
    pardl::BatchLoader lc(cls, 5, 1);
    const pardl::Batch bc = lc.batch(0);
    REQUIRE(bc.targets.empty());
    for (std::size_t i = 0; i < 5; ++i) REQUIRE(bc.labels[i] == cls.labels[lc.batch_indices(0)[i]]);

    SECTION("shape and index errors") {
        std::vector<std::size_t> bad{0, 25};
        std::vector<float> buf(2 * 3);
        REQUIRE_THROWS_AS(l.gather(bad, pardl::Matrix{buf.data(), 2, 3}, {}), ConfigError);
        REQUIRE_THROWS_AS(l.gather(idx, pardl::Matrix{buf.data(), 2, 3}, {}), ConfigError); // too few rows
        REQUIRE_THROWS_AS(l.gather(idx.first(2), pardl::Matrix{buf.data(), 3, 2}, {}), ConfigError); // cols
        std::vector<float> tb(2 * 5);
        REQUIRE_THROWS_AS(
            l.gather(idx.first(2), pardl::Matrix{buf.data(), 2, 3}, {}, pardl::Matrix{tb.data(), 2, 5}),
            ConfigError);
        REQUIRE_THROWS_AS(lc.gather(lc.batch_indices(0).first(1), pardl::Matrix{buf.data(), 1, 4}, {},
                                    pardl::Matrix{tb.data(), 1, 2}),
                          ConfigError); // no targets in a classification set
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic generators

namespace {
/// Accuracy of the nearest-class-mean classifier fitted on the data itself.
double nearest_mean_accuracy(const pardl::Dataset& d) {
    std::vector<double> mean(d.classes * d.cols, 0.0);
    std::vector<std::size_t> count(d.classes, 0);
    for (std::size_t i = 0; i < d.rows; ++i) {
        const auto k = static_cast<std::size_t>(d.labels[i]);
        ++count[k];
        for (std::size_t c = 0; c < d.cols; ++c) mean[k * d.cols + c] += d.x()(i, c);
    }
    for (std::size_t k = 0; k < d.classes; ++k)
        for (std::size_t c = 0; c < d.cols; ++c)
            mean[k * d.cols + c] /= static_cast<double>(std::max<std::size_t>(count[k], 1));
    std::size_t right = 0;
    for (std::size_t i = 0; i < d.rows; ++i) {
        std::size_t best = 0;
        double best_d = 1e300;
        for (std::size_t k = 0; k < d.classes; ++k) {
            double s = 0;
            for (std::size_t c = 0; c < d.cols; ++c) {
                const double diff = d.x()(i, c) - mean[k * d.cols + c];
                s += diff * diff;
            }
            if (s < best_d) {
                best_d = s;
                best = k;
            }
        }
        right += best == static_cast<std::size_t>(d.labels[i]);
    }
    return static_cast<double>(right) / static_cast<double>(d.rows);
}

bool same_bits(const pardl::Dataset& a, const pardl::Dataset& b) {
    return a.rows == b.rows && a.cols == b.cols &&
           std::equal(a.features.begin(), a.features.end(), b.features.begin()) &&
           std::equal(a.labels.begin(), a.labels.end(), b.labels.begin()) &&
           std::equal(a.targets.begin(), a.targets.end(), b.targets.begin());
}
} // namespace

TEST_CASE("make_blobs: deterministic, balanced, learnable", "[data][synthetic]") {
    const auto a = pardl::make_blobs(600, 8, 4, 5);
    REQUIRE(same_bits(a, pardl::make_blobs(600, 8, 4, 5)));
    REQUIRE_FALSE(same_bits(a, pardl::make_blobs(600, 8, 4, 6)));
    REQUIRE(a.classes == 4);
    REQUIRE(a.sample_shape == std::vector<std::size_t>{8});
    std::vector<std::size_t> count(4);
    for (std::size_t i = 0; i < a.rows; ++i) ++count[static_cast<std::size_t>(a.labels[i])];
    for (auto c : count) REQUIRE(c == 150);
    REQUIRE(nearest_mean_accuracy(a) > 0.95);
    REQUIRE(nearest_mean_accuracy(pardl::make_blobs(300, 2, 3, 1)) > 0.9);
}

TEST_CASE("make_regression: targets are linear in the features", "[data][synthetic]") {
    const auto d = pardl::make_regression(200, 5, 3, 9);
    REQUIRE(same_bits(d, pardl::make_regression(200, 5, 3, 9)));
    REQUIRE(d.has_targets());
    REQUIRE(d.target_cols == 3);
    REQUIRE(d.t().rows == 200);
    REQUIRE(d.classes == 0);
    for (std::size_t i = 0; i < d.rows; ++i) REQUIRE(d.labels[i] == 0);
    // A least-squares fit of output 0 on [x 1] (normal equations, Gaussian elimination) must leave
    // only the 0.01 noise.
    const std::size_t p = 6;
    std::vector<double> A(p * p, 0.0), rhs(p, 0.0);
    for (std::size_t i = 0; i < d.rows; ++i) {
        double row[6];
        for (std::size_t c = 0; c < 5; ++c) row[c] = d.x()(i, c);
        row[5] = 1.0;
        for (std::size_t r = 0; r < p; ++r) {
            rhs[r] += row[r] * d.t()(i, 0);
            for (std::size_t c = 0; c < p; ++c) A[r * p + c] += row[r] * row[c];
        }
    }
    for (std::size_t k = 0; k < p; ++k)
        for (std::size_t r = k + 1; r < p; ++r) {
            const double m = A[r * p + k] / A[k * p + k];
            for (std::size_t c = k; c < p; ++c) A[r * p + c] -= m * A[k * p + c];
            rhs[r] -= m * rhs[k];
        }
    std::vector<double> w(p);
    for (std::size_t k = p; k-- > 0;) {
        double s = rhs[k];
        for (std::size_t c = k + 1; c < p; ++c) s -= A[k * p + c] * w[c];
        w[k] = s / A[k * p + k];
    }
    double sse = 0;
    for (std::size_t i = 0; i < d.rows; ++i) {
        double pred = w[5];
        for (std::size_t c = 0; c < 5; ++c) pred += w[c] * d.x()(i, c);
        sse += (pred - d.t()(i, 0)) * (pred - d.t()(i, 0));
    }
    REQUIRE(std::sqrt(sse / static_cast<double>(d.rows)) < 0.02); // the noise is 0.01
}

TEST_CASE("make_images: shape, range, learnable", "[data][synthetic]") {
    const auto d = pardl::make_images(200, 3, 8, 8, 5, 4);
    REQUIRE(same_bits(d, pardl::make_images(200, 3, 8, 8, 5, 4)));
    REQUIRE(d.cols == 3 * 8 * 8);
    REQUIRE(d.sample_shape == std::vector<std::size_t>{3, 8, 8});
    REQUIRE(d.classes == 5);
    for (float v : d.features) {
        REQUIRE(v >= 0.0f);
        REQUIRE(v <= 1.0f);
    }
    REQUIRE(nearest_mean_accuracy(d) > 0.95);
    const auto g = pardl::make_images(100, 1, 28, 28, 10, 1);
    REQUIRE(g.sample_shape == std::vector<std::size_t>{1, 28, 28});
    REQUIRE(nearest_mean_accuracy(g) > 0.95);
    REQUIRE(pardl::make_images(4, 1, 1, 1, 2, 1).cols == 1);
}

// ---------------------------------------------------------------------------------------------
// Real Fashion-MNIST (present in CI through the Debian package dataset-fashion-mnist)

TEST_CASE("Real Fashion-MNIST loads with the expected shapes", "[data][fashion]") {
    const fs::path dir = pardl::default_fashion_mnist_dir;
    std::error_code ec;
    if (!fs::exists(dir / "train-images-idx3-ubyte.gz", ec) &&
        !fs::exists(dir / "train-images-idx3-ubyte", ec)) {
        WARN("Fashion-MNIST not installed in " << dir << "; skipping");
        SUCCEED();
        return;
    }
    const pardl::Dataset train = pardl::load_fashion_mnist(dir, true);
    REQUIRE(train.rows == 60000);
    REQUIRE(train.cols == 784);
    REQUIRE(train.sample_shape == std::vector<std::size_t>{1, 28, 28});
    REQUIRE(train.classes == 10);
    // Every label in 0..9, and Fashion-MNIST's training set has exactly 6000 of each class.
    std::vector<std::size_t> count(10, 0);
    for (std::int32_t v : train.labels)
        if (v >= 0 && v < 10) ++count[static_cast<std::size_t>(v)];
    for (auto c : count) REQUIRE(c == 6000);
    const auto [lo, hi] = std::minmax_element(train.features.begin(), train.features.end());
    REQUIRE(*lo == 0.0f);
    REQUIRE(*hi == 1.0f);

    const pardl::Dataset test = pardl::load_fashion_mnist(dir, false);
    REQUIRE(test.rows == 10000);
    REQUIRE(test.cols == 784);
    REQUIRE(
        std::all_of(test.labels.begin(), test.labels.end(), [](std::int32_t v) { return v >= 0 && v < 10; }));
    REQUIRE(std::all_of(test.features.begin(), test.features.end(),
                        [](float v) { return v >= 0.0f && v <= 1.0f; }));

    const pardl::Dataset small = pardl::load_fashion_mnist(dir, false, 100);
    REQUIRE(small.rows == 100);
    REQUIRE(same_bits(small, test.head(100)));
}

TEST_CASE("Synthetic sets and batch counts whose sizes overflow are refused and never wrap around",
          "[data][synthetic]") {
    constexpr std::size_t big = std::size_t{1} << 32;
    CHECK_THROWS_WITH(pardl::make_images(1, 1, big, big, 2, 1),
                      Catch::Contains("make_images: an image plane"));
    CHECK_THROWS_WITH(pardl::make_blobs(10, 2, std::size_t{1} << 63, 1),
                      Catch::Contains("make_blobs: the class centres"));
    CHECK_THROWS_WITH(pardl::make_regression(10, big, big, 1),
                      Catch::Contains("make_regression: the weights"));
    CHECK_THROWS_AS(pardl::detail::make_dataset(big, {big}, 2), ConfigError);
    constexpr std::size_t most = std::numeric_limits<std::size_t>::max();
    STATIC_REQUIRE(pardl::BatchLoader::batches_per_epoch(64, most) == 1);
    STATIC_REQUIRE(pardl::BatchLoader::batches_per_epoch(most, 2) == most / 2 + 1);
    STATIC_REQUIRE(pardl::BatchLoader::batches_per_epoch(most, 2, true) == most / 2);
}
