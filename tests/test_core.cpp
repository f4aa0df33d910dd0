// Core building blocks: the counter-based RNG (against SplitMix64's published test vector and
// statistical expectations), the one partition function, compile-time shapes, aligned buffers,
// the elementwise vector loop and the subnormal-mode scope.
#include "pardl/core/rng.hpp"
#include "pardl/core/subnormals.hpp"
#include "pardl/execution/partition.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/shape.hpp"
#include "pardl/tensor/vector_loop.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using std::size_t;
using std::uint64_t;

constexpr int draws = 100000;

} // namespace

// ---------------------------------------------------------------------------------------------
// mix64 / hash_keys

TEST_CASE("mix64 is SplitMix64's output function (reference test vector)", "[core][rng]") {
    // Vigna's splitmix64.c seeded with 1234567 produces these first five outputs; mix64(x) is one
    // SplitMix64 step from state x, so stepping the state by the golden gamma reproduces them.
    constexpr uint64_t gamma = 0x9e3779b97f4a7c15ULL;
    const uint64_t expected[] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                                 4593380528125082431ULL, 16408922859458223821ULL};
    uint64_t state = 1234567;
    for (uint64_t e : expected) {
        CHECK(pardl::mix64(state) == e);
        state += gamma;
    }
}

TEST_CASE("hash_keys is deterministic, usable at compile time, and sensitive to every key", "[core][rng]") {
    static_assert(pardl::hash_keys(1, 2, 3, 4) == pardl::hash_keys(1, 2, 3, 4));
    constexpr uint64_t h = pardl::hash_keys(11, 22, 33, 44);
    CHECK(pardl::hash_keys(11, 22, 33, 44) == h);
    CHECK(pardl::hash_keys(12, 22, 33, 44) != h);
    CHECK(pardl::hash_keys(11, 23, 33, 44) != h);
    CHECK(pardl::hash_keys(11, 22, 34, 44) != h);
    CHECK(pardl::hash_keys(11, 22, 33, 45) != h);
    // Argument order matters (a keyed tuple, not a set).
    CHECK(pardl::hash_keys(1, 2) != pardl::hash_keys(2, 1));
    // Defaults are zero.
    CHECK(pardl::hash_keys(5) == pardl::hash_keys(5, 0, 0, 0));

    // Avalanche: flipping one input bit flips about half of the 64 output bits.
    double flipped = 0;
    int trials = 0;
    for (uint64_t key = 0; key < 64; ++key) {
        for (int bit = 0; bit < 64; bit += 3) {
            const uint64_t a = pardl::hash_keys(key * 7919, 3, 5);
            const uint64_t b = pardl::hash_keys((key * 7919) ^ (uint64_t{1} << bit), 3, 5);
            flipped += std::popcount(a ^ b);
            ++trials;
        }
    }
    const double mean = flipped / trials;
    CHECK(mean > 30.0);
    CHECK(mean < 34.0);

    // No collisions over a grid of sample keys (seed, epoch, index).
    std::set<uint64_t> seen;
    for (uint64_t e = 0; e < 4; ++e)
        for (uint64_t i = 0; i < 2000; ++i) seen.insert(pardl::hash_keys(42, e, i));
    CHECK(seen.size() == 4 * 2000);
}

TEST_CASE("to_unit_float maps the top 24 bits into the unit interval", "[core][rng]") {
    CHECK(pardl::to_unit_float(0) == 0.0f);
    CHECK(pardl::to_unit_float(~uint64_t{0}) == 16777215.0f / 16777216.0f);
    CHECK(pardl::to_unit_float(~uint64_t{0}) < 1.0f);
    CHECK(pardl::to_unit_float(uint64_t{1} << 63) == 0.5f);
    // Low 40 bits are ignored.
    CHECK(pardl::to_unit_float((uint64_t{1} << 40) - 1) == 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Rng

TEST_CASE("Rng: same seed and stream give the same sequence", "[core][rng]") {
    pardl::Rng a(2024, 3), b(2024, 3);
    for (int i = 0; i < 1000; ++i) REQUIRE(a.next() == b.next());
    pardl::Rng c(2024, 3), d(2024, 3);
    for (int i = 0; i < 100; ++i) {
        REQUIRE(c.uniform() == d.uniform());
        REQUIRE(c.normal() == d.normal());
        REQUIRE(c.below(17) == d.below(17));
    }
}

TEST_CASE("Rng: the first draw is SplitMix64 from state hash_keys(seed, stream)", "[core][rng]") {
    // The state starts at hash_keys(seed, stream) and each draw is one SplitMix64 step, i.e.
    // mix64(state) with state advanced by one gamma per draw.
    constexpr uint64_t gamma = 0x9e3779b97f4a7c15ULL;
    pardl::Rng r(9, 4);
    uint64_t state = pardl::hash_keys(9, 4);
    for (int i = 0; i < 5; ++i) {
        CHECK(r.next() == pardl::mix64(state));
        state += gamma;
    }
}

TEST_CASE("Rng: different streams and different seeds give different sequences", "[core][rng]") {
    auto first = [](uint64_t seed, uint64_t stream) {
        pardl::Rng r(seed, stream);
        std::vector<uint64_t> v;
        for (int i = 0; i < 16; ++i) v.push_back(r.next());
        return v;
    };
    const auto base = first(1, 0);
    CHECK(first(1, 1) != base);
    CHECK(first(2, 0) != base);
    CHECK(first(0, 1) != first(1, 0));
    // Streams should not be shifted copies of each other either: no shared values at all.
    const auto s1 = first(1, 1);
    std::set<uint64_t> all(base.begin(), base.end());
    for (uint64_t v : s1) CHECK(all.count(v) == 0);
}

TEST_CASE("Rng::uniform lies in 0 <= u < 1 with mean 1/2 and variance 1/12", "[core][rng]") {
    pardl::Rng r(123);
    double sum = 0, sum2 = 0;
    float lo = 1, hi = 0;
    std::vector<int> bins(10, 0);
    for (int i = 0; i < draws; ++i) {
        const float u = r.uniform();
        REQUIRE(u >= 0.0f);
        REQUIRE(u < 1.0f);
        lo = std::min(lo, u);
        hi = std::max(hi, u);
        sum += u;
        sum2 += static_cast<double>(u) * u;
        ++bins[static_cast<size_t>(u * 10)];
    }
    const double mean = sum / draws;
    const double var = sum2 / draws - mean * mean;
    // Standard error of the mean is 0.289 / sqrt(1e5) = 0.0009.
    CHECK(mean == Approx(0.5).margin(0.005));
    CHECK(var == Approx(1.0 / 12.0).margin(0.002));
    CHECK(lo < 0.001f);
    CHECK(hi > 0.999f);
    // Each decile holds 10000 +- 95 (binomial sd); allow 5 sd.
    for (int b : bins) CHECK(std::abs(b - draws / 10) < 480);
}

TEST_CASE("Rng::uniform(lo, hi) stays in lo <= u < hi", "[core][rng]") {
    pardl::Rng r(5);
    double sum = 0;
    for (int i = 0; i < 20000; ++i) {
        const float u = r.uniform(-3.0f, 5.0f);
        REQUIRE(u >= -3.0f);
        REQUIRE(u < 5.0f);
        sum += u;
    }
    CHECK(sum / 20000 == Approx(1.0).margin(0.1)); // sd of the mean: 2.31 / sqrt(2e4) = 0.016
}

TEST_CASE("Rng::normal has mean 0, variance 1 and normal tails", "[core][rng]") {
    pardl::Rng r(77, 1);
    double sum = 0, sum2 = 0, sum4 = 0;
    int within1 = 0, within2 = 0;
    for (int i = 0; i < draws; ++i) {
        const double x = r.normal();
        REQUIRE(std::isfinite(x));
        sum += x;
        sum2 += x * x;
        sum4 += x * x * x * x;
        within1 += std::abs(x) < 1.0;
        within2 += std::abs(x) < 2.0;
    }
    const double mean = sum / draws;
    const double var = sum2 / draws - mean * mean;
    // Standard errors: mean 0.0032, variance sqrt(2 / 1e5) = 0.0045.
    CHECK(mean == Approx(0.0).margin(0.015));
    CHECK(var == Approx(1.0).margin(0.02));
    CHECK(sum4 / draws == Approx(3.0).margin(0.1)); // kurtosis of N(0, 1)
    // P(|x| < 1) = 0.6827, P(|x| < 2) = 0.9545 (binomial sd 0.0015 and 0.0007).
    CHECK(within1 / double(draws) == Approx(0.6827).margin(0.007));
    CHECK(within2 / double(draws) == Approx(0.9545).margin(0.0035));
}

TEST_CASE("Rng::below(n) is below n and roughly uniform", "[core][rng]") {
    pardl::Rng r(31337);
    SECTION("n = 1 is always 0") {
        for (int i = 0; i < 1000; ++i) REQUIRE(r.below(1) == 0);
    }
    SECTION("small and odd n stay in range and hit every value") {
        for (uint64_t n : {2ULL, 3ULL, 7ULL, 13ULL, 1000ULL}) {
            std::vector<int> hits(n, 0);
            for (int i = 0; i < 20000; ++i) {
                const uint64_t v = r.below(n);
                REQUIRE(v < n);
                ++hits[v];
            }
            for (int h : hits) CHECK(h > 0);
        }
    }
    SECTION("n = 10: each value about 10% (chi-square)") {
        std::vector<int> hits(10, 0);
        for (int i = 0; i < draws; ++i) ++hits[r.below(10)];
        double chi2 = 0;
        for (int h : hits) {
            const double e = draws / 10.0;
            chi2 += (h - e) * (h - e) / e;
        }
        // 9 degrees of freedom: P(chi2 > 27.9) = 0.001.
        CHECK(chi2 < 27.9);
    }
    SECTION("huge n is in range and reaches the upper half") {
        const uint64_t n = (uint64_t{1} << 62) + 12345;
        bool upper = false;
        for (int i = 0; i < 1000; ++i) {
            const uint64_t v = r.below(n);
            REQUIRE(v < n);
            upper = upper || v > n / 2;
        }
        CHECK(upper);
    }
}

// ---------------------------------------------------------------------------------------------
// balanced_range / max_part_size

TEST_CASE("balanced_range: hand-worked examples", "[core][partition]") {
    using pardl::Range;
    CHECK(pardl::balanced_range(10, 0, 3) == Range{0, 4});
    CHECK(pardl::balanced_range(10, 1, 3) == Range{4, 7});
    CHECK(pardl::balanced_range(10, 2, 3) == Range{7, 10});
    CHECK(pardl::balanced_range(7, 0, 1) == Range{0, 7});
    // total < parts: the first `total` parts get one element, the rest are empty.
    CHECK(pardl::balanced_range(2, 0, 5) == Range{0, 1});
    CHECK(pardl::balanced_range(2, 1, 5) == Range{1, 2});
    CHECK(pardl::balanced_range(2, 2, 5) == Range{2, 2});
    CHECK(pardl::balanced_range(2, 4, 5) == Range{2, 2});
    CHECK(pardl::balanced_range(0, 0, 1) == Range{0, 0});
    CHECK(pardl::balanced_range(2, 4, 5).empty());
    CHECK(pardl::balanced_range(10, 1, 3).size() == 3);
    static_assert(pardl::balanced_range(9, 2, 3) == Range{6, 9});
}

TEST_CASE("balanced_range: contiguous cover with sizes differing by at most one", "[core][partition]") {
    auto check = [](size_t total, size_t parts) {
        INFO("total " << total << ", parts " << parts);
        size_t expect_begin = 0, smallest = total + 1, largest = 0;
        for (size_t p = 0; p < parts; ++p) {
            const pardl::Range r = pardl::balanced_range(total, p, parts);
            REQUIRE(r.begin == expect_begin);
            REQUIRE(r.end >= r.begin);
            // The larger pieces come first.
            if (p > 0) REQUIRE(r.size() <= pardl::balanced_range(total, p - 1, parts).size());
            smallest = std::min(smallest, r.size());
            largest = std::max(largest, r.size());
            expect_begin = r.end;
        }
        REQUIRE(expect_begin == total);
        REQUIRE(largest - smallest <= 1);
        REQUIRE(largest == pardl::max_part_size(total, parts));
        // Exactly total % parts pieces have the larger size (when sizes differ).
        size_t big = 0;
        for (size_t p = 0; p < parts; ++p)
            big += pardl::balanced_range(total, p, parts).size() == total / parts + 1;
        REQUIRE(big == total % parts);
    };
    for (size_t total = 0; total <= 70; ++total)
        for (size_t parts = 1; parts <= 19; ++parts) check(total, parts);
    check(1000003, 7);
    check(60000, 64);
    check(3, 128);
}

TEST_CASE("max_part_size is the ceiling of total / parts", "[core][partition]") {
    CHECK(pardl::max_part_size(10, 3) == 4);
    CHECK(pardl::max_part_size(9, 3) == 3);
    CHECK(pardl::max_part_size(0, 4) == 0);
    CHECK(pardl::max_part_size(2, 5) == 1);
    CHECK(pardl::max_part_size(128, 1) == 128);
    static_assert(pardl::max_part_size(100, 8) == 13);
}

// ---------------------------------------------------------------------------------------------
// Shape

TEST_CASE("Shape: size, rank, dims and str()", "[core][shape]") {
    using V = pardl::Shape<784>;
    using I = pardl::Shape<1, 28, 28>;
    using B = pardl::Shape<3, 4, 5, 6>;
    STATIC_REQUIRE(V::size == 784);
    STATIC_REQUIRE(V::rank == 1);
    STATIC_REQUIRE(I::size == 784);
    STATIC_REQUIRE(I::rank == 3);
    STATIC_REQUIRE(B::size == 360);
    STATIC_REQUIRE(B::rank == 4);
    STATIC_REQUIRE(I::dims[0] == 1);
    STATIC_REQUIRE(I::dims[2] == 28);
    CHECK(V::str() == "784");
    CHECK(I::str() == "1x28x28");
    CHECK(B::str() == "3x4x5x6");
    CHECK(pardl::Shape<1>::str() == "1");

    STATIC_REQUIRE(pardl::ShapeType<I>);
    STATIC_REQUIRE(!pardl::ShapeType<int>);
    STATIC_REQUIRE(!pardl::ShapeType<std::array<size_t, 3>>);
    STATIC_REQUIRE(pardl::ImageDims<pardl::Shape<3, 32, 16>>::channels == 3);
    STATIC_REQUIRE(pardl::ImageDims<pardl::Shape<3, 32, 16>>::height == 32);
    STATIC_REQUIRE(pardl::ImageDims<pardl::Shape<3, 32, 16>>::width == 16);
}

// ---------------------------------------------------------------------------------------------
// AlignedBuffer

TEST_CASE("AlignedBuffer: 64-byte aligned and zeroed for every size", "[core][buffer]") {
    STATIC_REQUIRE(pardl::buffer_alignment == 64);
    for (size_t n = 1; n <= 130; ++n) {
        pardl::AlignedBuffer<float> f(n);
        pardl::AlignedBuffer<double> d(n);
        pardl::AlignedBuffer<std::int32_t> i(n);
        REQUIRE(reinterpret_cast<std::uintptr_t>(f.data()) % 64 == 0);
        REQUIRE(reinterpret_cast<std::uintptr_t>(d.data()) % 64 == 0);
        REQUIRE(reinterpret_cast<std::uintptr_t>(i.data()) % 64 == 0);
        REQUIRE(f.size() == n);
        REQUIRE(std::all_of(f.begin(), f.end(), [](float v) { return v == 0.0f; }));
        REQUIRE(std::all_of(d.begin(), d.end(), [](double v) { return v == 0.0; }));
        REQUIRE(std::all_of(i.begin(), i.end(), [](std::int32_t v) { return v == 0; }));
    }
}

TEST_CASE("AlignedBuffer: a size whose bytes do not fit a size_t is bad_alloc, not a small buffer",
          "[core][buffer]") {
    pardl::AlignedBuffer<float> f;
    CHECK_THROWS_AS(f.resize(std::numeric_limits<size_t>::max()), std::bad_alloc);
    CHECK_THROWS_AS(f.resize((size_t{1} << 62) + 1), std::bad_alloc);
    CHECK(f.size() == 0);
}

TEST_CASE("AlignedBuffer: buffers of 4 MiB and more start on a 2 MiB (huge page) boundary",
          "[core][buffer]") {
    constexpr std::size_t mib = std::size_t{1} << 20;
    for (std::size_t bytes : {4 * mib - 4, 4 * mib, 4 * mib + 4, 37 * mib + 12}) {
        INFO(bytes << " bytes");
        pardl::AlignedBuffer<float> f(bytes / sizeof(float));
        const auto at = reinterpret_cast<std::uintptr_t>(f.data());
        CHECK(at % (bytes >= 4 * mib ? 2 * mib : 64) == 0);
        CHECK(f.size() == bytes / sizeof(float));
        CHECK(std::all_of(f.begin(), f.end(), [](float v) { return v == 0.0f; }));
        f[f.size() - 1] = 1.0f; // the whole size is writable
        CHECK(f[f.size() - 1] == 1.0f);
    }
}

TEST_CASE("AlignedBuffer: default, resize, zero, span", "[core][buffer]") {
    pardl::AlignedBuffer<float> b;
    CHECK(b.empty());
    CHECK(b.size() == 0);
    CHECK(b.span().empty());

    b.resize(5);
    CHECK(b.size() == 5);
    CHECK(!b.empty());
    for (size_t k = 0; k < 5; ++k) b[k] = float(k + 1);
    CHECK(b[4] == 5.0f);
    CHECK(b.end() - b.begin() == 5);
    std::span<float> s = b; // implicit conversion
    CHECK(s.size() == 5);
    CHECK(s.data() == b.data());
    CHECK(s[2] == 3.0f);

    SECTION("resize to another size reallocates zeroed and aligned") {
        b.resize(1000);
        CHECK(b.size() == 1000);
        CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
        CHECK(std::all_of(b.begin(), b.end(), [](float v) { return v == 0.0f; }));
    }
    SECTION("resize to the same size zeroes") {
        b.resize(5);
        CHECK(b.size() == 5);
        CHECK(std::all_of(b.begin(), b.end(), [](float v) { return v == 0.0f; }));
    }
    SECTION("zero() clears") {
        b.zero();
        CHECK(std::all_of(b.begin(), b.end(), [](float v) { return v == 0.0f; }));
    }
    SECTION("resize(0) empties") {
        b.resize(0);
        CHECK(b.empty());
        CHECK(b.size() == 0);
        CHECK(b.data() == nullptr);
    }
}

TEST_CASE("AlignedBuffer: move transfers ownership and leaves the source empty", "[core][buffer]") {
    STATIC_REQUIRE(!std::is_copy_constructible_v<pardl::AlignedBuffer<float>>);
    STATIC_REQUIRE(std::is_nothrow_move_constructible_v<pardl::AlignedBuffer<float>>);

    pardl::AlignedBuffer<float> a(10);
    for (size_t k = 0; k < 10; ++k) a[k] = float(k) * 0.5f;
    const float* p = a.data();

    pardl::AlignedBuffer<float> b(std::move(a));
    CHECK(b.data() == p);
    CHECK(b.size() == 10);
    CHECK(b[9] == 4.5f);
    // The moved-from buffer must be a valid empty buffer (size 0, usable again).
    CHECK(a.size() == 0);
    CHECK(a.empty());
    CHECK(a.begin() == a.end());
    a.resize(3);
    CHECK(a.size() == 3);
    CHECK(a[2] == 0.0f);

    pardl::AlignedBuffer<float> c(4);
    c = std::move(b);
    CHECK(c.data() == p);
    CHECK(c.size() == 10);
    CHECK(c[1] == 0.5f);
    CHECK(b.size() == 0);
    CHECK(b.empty());
}

TEST_CASE("for_each_vector visits every element once, the tail through the same lanes", "[core][simd]") {
    using pardl::simd::FloatVector;
    const std::size_t w = pardl::simd::float_lanes;
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, w - 1, w, w + 1, 3 * w + 5}) {
        INFO("n " << n << ", lanes " << w);
        std::vector<float> a(n + 1, -7.0f), b(n + 1);
        for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<float>(i) * 0.5f - 3.0f;
        const std::vector<float> before = b;
        // a = 2 b + 1 (a written, b read), then in place: b = b * b through the same array twice.
        pardl::simd::for_each_vector(
            n,
            [](FloatVector& ai, const FloatVector& bi) {
                ai = bi * pardl::simd::broadcast(2.0f) + pardl::simd::broadcast(1.0f);
            },
            a.data(), static_cast<const float*>(b.data()));
        pardl::simd::for_each_vector(
            n, [](FloatVector& out, const FloatVector& in) { out = in * in; }, b.data(),
            static_cast<const float*>(b.data()));
        for (std::size_t i = 0; i < n; ++i) {
            CHECK(a[i] == 2.0f * before[i] + 1.0f);
            CHECK(b[i] == before[i] * before[i]);
        }
        CHECK(a[n] == -7.0f); // nothing written past n
        // A slice that starts anywhere gives the bits of the whole pass (the optimizers rely on it).
        std::vector<float> whole(n), parts(n);
        const auto square_plus = [](FloatVector& out, const FloatVector& in) {
            out = pardl::simd::fma(in, in, pardl::simd::broadcast(0.1f));
        };
        pardl::simd::for_each_vector(n, square_plus, whole.data(), static_cast<const float*>(before.data()));
        const std::size_t cut = n / 3;
        pardl::simd::for_each_vector(cut, square_plus, parts.data(),
                                     static_cast<const float*>(before.data()));
        pardl::simd::for_each_vector(n - cut, square_plus, parts.data() + cut,
                                     static_cast<const float*>(before.data()) + cut);
        CHECK(whole == parts);
    }
}

TEST_CASE("sum_of_squares matches a double-precision sum, and gives the same bits wherever the array lies",
          "[core][simd]") {
    const std::size_t w = pardl::simd::float_lanes;
    for (std::size_t n :
         {std::size_t{0}, std::size_t{1}, w - 1, 4 * w, 4 * w + 3, 12 * w + 5, std::size_t{10007}}) {
        INFO("n " << n << ", lanes " << w);
        std::vector<float> v(n + 3);
        double reference = 0;
        for (std::size_t i = 0; i < n; ++i) {
            v[i] = std::sin(static_cast<float>(i) * 0.37f) * (1.0f + static_cast<float>(i % 7));
            reference += static_cast<double>(v[i]) * v[i];
        }
        const double sum = pardl::simd::sum_of_squares(v.data(), n);
        CHECK(sum == Approx(reference).epsilon(1e-6));
        if (n == 0) CHECK(sum == 0.0);
        // Shifted by 3 floats (another alignment): the same bits.
        std::copy_backward(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(n),
                           v.begin() + static_cast<std::ptrdiff_t>(n + 3));
        CHECK(pardl::simd::sum_of_squares(v.data() + 3, n) == sum);
    }
    // Squares beyond a float's range: summed in double instead, still finite.
    const std::vector<float> huge(100, 1e20f);
    CHECK(pardl::simd::sum_of_squares(huge.data(), huge.size()) == Approx(100 * 1e40));
    // Every square a float, but not their sum (64 x 9e36 > 3.4e38): also summed in double.
    const std::vector<float> large(64, 3e18f);
    CHECK(pardl::simd::sum_of_squares(large.data(), large.size()) == Approx(64 * 9e36));
}

TEST_CASE("simd::clamp bounds every lane, keeps NaN, and lane_sum adds every lane", "[core][simd]") {
    using pardl::simd::FloatVector;
    const std::size_t w = pardl::simd::float_lanes;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const std::vector<float> cases = {nan, inf, -inf, 2.5f, -2.5f, 0.5f, -0.0f, 1.0f};
    std::vector<float> in(w), out(w);
    for (std::size_t start = 0; start < cases.size(); ++start) {
        for (std::size_t i = 0; i < w; ++i) in[i] = cases[(start + i) % cases.size()];
        pardl::simd::for_each_vector(
            w,
            [](FloatVector& o, const FloatVector& x) {
                o = pardl::simd::clamp(x, pardl::simd::broadcast(-1.0f), pardl::simd::broadcast(1.0f));
            },
            out.data(), in.data());
        for (std::size_t i = 0; i < w; ++i) {
            INFO("lane " << i << ": " << in[i]);
            if (std::isnan(in[i]))
                CHECK(std::isnan(out[i])); // a diverging gradient stays visible
            else
                CHECK(out[i] == std::clamp(in[i], -1.0f, 1.0f));
        }
    }
    float total = 0;
    pardl::simd::for_each_vector(
        w, [&](const FloatVector& x) { total = pardl::simd::lane_sum(x); },
        std::vector<float>(w, 0.25f).data());
    CHECK(total == 0.25f * static_cast<float>(w));
}

TEST_CASE("A subnormal-mode scope flushes subnormals to zero and restores the mode it found",
          "[core][subnormals]") {
    REQUIRE(pardl::SubnormalMode::can_flush); // the machines pardl is tested on are x86-64
    using pardl::ScopedSubnormalMode, pardl::SubnormalMode;
    // volatile: computed at run time, in the thread's mode, not folded by the compiler.
    volatile float smallest_normal = std::numeric_limits<float>::min(), half = 0.5f, one = 1.0f;
    volatile float subnormal = std::numeric_limits<float>::denorm_min() * 8;
    const auto halved = [&] { return smallest_normal * half; }; // a subnormal result
    const auto read = [&] { return subnormal * one; };          // a subnormal operand
    const SubnormalMode before = SubnormalMode::current();
    REQUIRE_FALSE(before.flushes()); // a process starts in IEEE mode
    CHECK(halved() == std::numeric_limits<float>::min() / 2);
    CHECK(read() == std::numeric_limits<float>::denorm_min() * 8);
    {
        const ScopedSubnormalMode flush(SubnormalMode::flushed());
        CHECK(SubnormalMode::current().flushes());
        CHECK(halved() == 0.0f);
        CHECK(read() == 0.0f);
        {
            const ScopedSubnormalMode keep(SubnormalMode::kept());
            CHECK(halved() == std::numeric_limits<float>::min() / 2);
        }
        CHECK(SubnormalMode::current().flushes()); // the inner scope gave back the outer's mode
        CHECK(halved() == 0.0f);
    }
    CHECK(SubnormalMode::current() == before);
    CHECK(halved() == std::numeric_limits<float>::min() / 2);
    CHECK(read() == std::numeric_limits<float>::denorm_min() * 8);
}
