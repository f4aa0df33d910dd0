// Checks pardl::gemm against a double-precision reference over all op forms, betas, ragged and
// strided shapes, and the beta == 0 / k == 0 / concurrent-call contracts, once with the kernels of
// every instruction set this CPU runs; and the run-time choice of that instruction set.
// Built three times (tests/tests.cmake): for this CPU; for plain x86-64 (PARDL_TEST_PORTABLE_BUILD),
// where everything above SSE2 comes from run-time dispatch; and for plain x86-64 with the portable
// scalar kernels alone (PARDL_GEMM_SCALAR, which has no dispatcher: every instruction set "forced"
// below runs them), the path of a CPU for which xsimd has no instruction set.
#include "pardl/core/errors.hpp"
#include "pardl/core/rng.hpp"
#include "pardl/tensor/gemm.hpp"
#include "pardl/tensor/simd.hpp"

#include "each_isa.hpp"

#include <catch2/catch.hpp>
#include <xsimd/xsimd.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using pardl::Op;
using pardl::simd::Isa;
using std::size_t;

/// What the CPU runs by an account independent of simd.hpp's: the instruction bits from xsimd,
/// and whether the OS enables the registers from the compiler's own CPU detection.
std::vector<Isa> expected_supported() {
    std::vector<Isa> isas{Isa::generic};
#if defined(PARDL_SIMD_X86)
    const auto cpu = xsimd::available_architectures();
    const bool avx2 =
        cpu.avx2 && cpu.fma3_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2) isas.push_back(Isa::avx2);
    if (avx2 && cpu.avx512f && __builtin_cpu_supports("avx512f")) isas.push_back(Isa::avx512);
#endif
    return isas;
}

std::string names(const std::vector<Isa>& isas) {
    std::string out;
    for (Isa isa : isas) out += std::string(pardl::simd::name(isa)) + " ";
    return out;
}

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float sentinel = -12345.0f;

struct Problem {
    Op op_a = Op::N;
    Op op_b = Op::N;
    size_t m = 0, n = 0, k = 0;
    float beta = 0.0f;
    size_t pad = 0; // extra elements per stored row of A, B and C
};

std::string describe(const Problem& p) {
    std::ostringstream os;
    os << (p.op_a == Op::N ? 'N' : 'T') << (p.op_b == Op::N ? 'N' : 'T') << " m=" << p.m << " n=" << p.n
       << " k=" << p.k << " beta=" << p.beta << " pad=" << p.pad;
    return os.str();
}

/// A stored row-major matrix whose padding columns hold NaN, so any read of them poisons C.
struct Stored {
    size_t rows = 0, cols = 0, ld = 0;
    std::vector<float> data;

    Stored(size_t r, size_t c, size_t pad, pardl::Rng& rng) : rows(r), cols(c), ld(c + pad) {
        data.assign(std::max<size_t>(1, r * ld), nan_f);
        for (size_t i = 0; i < r; ++i)
            for (size_t j = 0; j < c; ++j) data[i * ld + j] = rng.uniform(-1.0f, 1.0f);
    }
    float at(Op op, size_t i, size_t j) const { return op == Op::N ? data[i * ld + j] : data[j * ld + i]; }
};

/// Largest |c - ref| / (1e-4 * sum |a||b| + |beta c0| * 1e-6 + tiny) over C, and whether the
/// padding of C survived; a result <= 1 passes.
struct Outcome {
    double worst_ratio = 0.0;
    bool padding_intact = true;
};

Outcome run_and_compare(const Problem& p, pardl::Rng& rng) {
    const size_t a_rows = p.op_a == Op::N ? p.m : p.k;
    const size_t a_cols = p.op_a == Op::N ? p.k : p.m;
    const size_t b_rows = p.op_b == Op::N ? p.k : p.n;
    const size_t b_cols = p.op_b == Op::N ? p.n : p.k;
    const Stored a(a_rows, a_cols, p.pad, rng);
    const Stored b(b_rows, b_cols, p.pad, rng);
    Stored c(p.m, p.n, p.pad, rng);
    for (size_t i = 0; i < p.m; ++i)
        for (size_t j = p.n; j < c.ld; ++j) c.data[i * c.ld + j] = sentinel;
    if (p.beta == 0.0f)
        for (size_t i = 0; i < p.m; ++i)
            for (size_t j = 0; j < p.n; ++j) c.data[i * c.ld + j] = nan_f;
    const std::vector<float> c0 = c.data;

    pardl::gemm(p.op_a, p.op_b, p.m, p.n, p.k, a.data.data(), a.ld, b.data.data(), b.ld, p.beta,
                c.data.data(), c.ld);

    Outcome out;
    for (size_t i = 0; i < p.m; ++i) {
        for (size_t j = 0; j < p.n; ++j) {
            double ref = 0.0, mag = 0.0;
            for (size_t q = 0; q < p.k; ++q) {
                const double prod = double(a.at(p.op_a, i, q)) * double(b.at(p.op_b, q, j));
                ref += prod;
                mag += std::abs(prod);
            }
            double tol = 1e-4 * mag + 1e-6;
            if (p.beta != 0.0f) {
                const double old = c0[i * c.ld + j];
                ref += double(p.beta) * old;
                tol += 1e-6 * std::abs(double(p.beta) * old);
            }
            const double got = c.data[i * c.ld + j];
            const double ratio = std::isfinite(got) ? std::abs(got - ref) / tol : 1e30;
            out.worst_ratio = std::max(out.worst_ratio, ratio);
        }
        for (size_t j = p.n; j < c.ld; ++j)
            if (c.data[i * c.ld + j] != sentinel) out.padding_intact = false;
    }
    return out;
}

void check(const Problem& p, pardl::Rng& rng) {
    const Outcome out = run_and_compare(p, rng);
    INFO(describe(p) << " worst error / tolerance = " << out.worst_ratio);
    CHECK(out.worst_ratio <= 1.0);
    CHECK(out.padding_intact);
}

constexpr Op ops[] = {Op::N, Op::T};
constexpr float betas[] = {0.0f, 1.0f, 0.5f};

} // namespace

TEST_CASE("gemm matches a double reference on small ragged shapes", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(1);
    const size_t dims[] = {1, 2, 3, 5, 7, 13, 14, 16, 17, 31, 33}; // 14: one whole AVX-512 row sliver
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (size_t m : dims)
                for (size_t n : dims)
                    for (size_t k : {size_t{1}, size_t{3}, size_t{17}, size_t{31}}) {
                        const float beta = betas[(m + n + k) % 3];
                        check({op_a, op_b, m, n, k, beta, (m * n) % 3}, rng);
                    }
}

TEST_CASE("gemm matches a double reference on random larger shapes", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(2);
    const size_t dims[] = {1, 2, 3, 7, 13, 31, 64, 97, 128, 257};
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (float beta : betas)
                for (int trial = 0; trial < 6; ++trial) {
                    Problem p{op_a,
                              op_b,
                              dims[rng.below(10)],
                              dims[rng.below(10)],
                              dims[rng.below(10)],
                              beta,
                              rng.below(3) == 0 ? size_t{0} : rng.below(9)};
                    check(p, rng);
                }
}

TEST_CASE("gemm crosses its cache blocks (k and n beyond one panel)", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(3);
    for (Op op_a : ops)
        for (Op op_b : ops) {
            check({op_a, op_b, 29, 1100, 600, 1.0f, 3}, rng);
            check({op_a, op_b, 64, 784, 257, 0.0f, 0}, rng);
            check({op_a, op_b, 131, 67, 1031, 0.5f, 1}, rng);
            check({op_a, op_b, 288, 196, 64, 0.0f, 0}, rng); // conv2's input gradient: 196 = 6 * 32 + 4
        }
}

TEST_CASE("gemm at the MLP training shapes", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(4);
    check({Op::N, Op::N, 64, 256, 784, 0.0f, 0}, rng);
    check({Op::T, Op::N, 784, 256, 64, 1.0f, 0}, rng);
    check({Op::N, Op::T, 64, 784, 256, 0.0f, 0}, rng);
    check({Op::N, Op::N, 64, 10, 128, 0.0f, 0}, rng);
    check({Op::T, Op::N, 128, 10, 64, 1.0f, 0}, rng);
    check({Op::N, Op::T, 64, 128, 10, 0.0f, 0}, rng);
}

// A B^T with a long k and few rows goes through dot products (gemm.hpp: dot_pays) rather than the
// packed micro-kernels: k >= 512 and m <= 64 here, with k not a multiple of 16 (the zero-padded
// tail), ragged tiles in both directions and padded rows whose NaN would show any read past k.
TEST_CASE("gemm's dot products (A B^T, long k, few rows) match a double reference", "[gemm][dot]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(13);
    for (const auto [m, n, k] : {std::array<size_t, 3>{9, 32, 784},
                                 {1, 1, 512},
                                 {2, 3, 513},
                                 {5, 7, 527},
                                 {64, 65, 600},
                                 {10, 130, 1031},
                                 {4, 5, 520}})
        for (float beta : betas)
            for (size_t pad : {size_t{0}, size_t{3}}) check({Op::N, Op::T, m, n, k, beta, pad}, rng);
}

namespace {

/// Whether the portable kernels' multiply-add rounds once (false for plain x86-64's SSE2).
bool generic_multiply_add_is_fused() {
    using V = pardl::detail::gemm::generic::Vec;
    volatile float a = 1.0f + 0x1p-12f, c = -(1.0f + 0x1p-11f); // a * a = 1 + 2^-11 + 2^-24
    alignas(64) float out[64];
    V::store(out, V::fma(V::set1(a), V::set1(a), V::set1(c)));
    return out[0] != 0.0f;
}

/// Whether gemm runs the portable kernels (generic::Vec) with `isa` forced: in a PARDL_GEMM_SCALAR
/// build whatever is forced.
constexpr bool runs_portable_kernels(Isa isa) {
#if defined(PARDL_GEMM_SCALAR)
    static_cast<void>(isa);
    return true;
#else
    return isa == Isa::generic;
#endif
}

} // namespace

TEST_CASE("gemm's dot products have the bits of their stated order on every instruction set", "[gemm][dot]") {
    // Lane l of 16 sums the products of k = l, l + 16, ... with fused multiply-adds; the lanes are
    // added by halving (l + 8, then + 4, + 2, + 1); beta joins as the other paths' combine does.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    if (runs_portable_kernels(pardl_test_isa) && !generic_multiply_add_is_fused()) {
        SUCCEED("the portable kernels' multiply-add rounds twice on this build: checked against the "
                "reference only");
        return;
    }
    pardl::Rng rng(14);
    for (const auto [m, n, k] : {std::array<size_t, 3>{9, 32, 784}, {7, 10, 529}, {64, 3, 512}})
        for (float beta : betas) {
            INFO("m " << m << " n " << n << " k " << k << " beta " << beta);
            std::vector<float> a(m * k), b(n * k), c(m * n);
            for (float& v : a) v = rng.uniform(-1.0f, 1.0f);
            for (float& v : b) v = rng.uniform(-1.0f, 1.0f);
            for (float& v : c) v = rng.uniform(-1.0f, 1.0f);
            std::vector<float> expect(m * n);
            for (size_t i = 0; i < m; ++i)
                for (size_t j = 0; j < n; ++j) {
                    float lanes[16] = {};
                    for (size_t q = 0; q < k; ++q)
                        lanes[q % 16] = std::fma(a[i * k + q], b[j * k + q], lanes[q % 16]);
                    for (int width = 8; width >= 1; width /= 2)
                        for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
                    const float old = c[i * n + j];
                    expect[i * n + j] = beta == 0.0f   ? lanes[0]
                                        : beta == 1.0f ? old + lanes[0]
                                                       : std::fma(beta, old, lanes[0]);
                }
            pardl::gemm(Op::N, Op::T, m, n, k, a.data(), k, b.data(), k, beta, c.data(), n);
            CHECK(std::memcmp(c.data(), expect.data(), c.size() * sizeof(float)) == 0);
        }
}

TEST_CASE("gemm with beta == 0 never reads C", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(5);
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (size_t s : {size_t{1}, size_t{13}, size_t{70}})
                check({op_a, op_b, s, s + 2, s + 1, 0.0f, 2}, rng);

    // And explicitly: a NaN-filled C comes back finite.
    std::vector<float> a(6, 1.0f), b(6, 2.0f), c(4, nan_f);
    pardl::gemm(Op::N, Op::N, 2, 2, 3, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2);
    for (float x : c) CHECK(x == 6.0f);
}

TEST_CASE("gemm with k == 0 scales C by beta", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
    pardl::gemm(Op::N, Op::N, 2, 2, 0, nullptr, 1, nullptr, 2, 0.5f, c.data(), 2);
    CHECK(c == std::vector<float>{0.5f, 1.0f, 1.5f, 2.0f});
    std::vector<float> d(4, nan_f);
    pardl::gemm(Op::N, Op::N, 2, 2, 0, nullptr, 1, nullptr, 2, 0.0f, d.data(), 2);
    CHECK(d == std::vector<float>(4, 0.0f));
}

TEST_CASE("gemm's epilogue equals a bias-filled C with beta = 1, then ReLU, bit for bit", "[gemm]") {
    // What Conv2D relied on before the epilogue: the fused result must not change a single bit.
    // The shapes cross several k blocks (k > 256), ragged right edges and every sliver height.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(11);
    for (Op op_a : ops)
        for (const auto [m, n, k] :
             {std::array<size_t, 3>{64, 196, 288}, {32, 784, 9}, {13, 37, 600}, {1, 5, 1}})
            for (bool relu : {false, true}) {
                INFO("m " << m << " n " << n << " k " << k << " relu " << relu);
                std::vector<float> a(m * k), b(k * n), bias(m);
                for (float& v : a) v = rng.uniform(-1.0f, 1.0f);
                for (float& v : b) v = rng.uniform(-1.0f, 1.0f);
                for (float& v : bias) v = rng.uniform(-2.0f, 2.0f);
                const size_t lda = op_a == Op::N ? k : m;
                std::vector<float> expect(m * n), got(m * n, nan_f);
                for (size_t i = 0; i < m; ++i) std::fill_n(expect.begin() + i * n, n, bias[i]);
                pardl::gemm(op_a, Op::N, m, n, k, a.data(), lda, b.data(), n, 1.0f, expect.data(), n);
                if (relu)
                    for (float& v : expect) v = v > 0.0f ? v : 0.0f;
                pardl::gemm(op_a, Op::N, m, n, k, a.data(), lda, b.data(), n, 0.0f, got.data(), n,
                            pardl::Epilogue{.row_bias = bias.data(), .relu = relu});
                CHECK(std::memcmp(got.data(), expect.data(), got.size() * sizeof(float)) == 0);
            }
}

TEST_CASE("gemm's ragged right edge has the same bits whether A is read in place or packed", "[gemm]") {
    // With op(A) = A^T read in place, a ragged right edge of C may be computed down C's rows
    // (gemm_kernels.ipp, edge_columns) rather than by the micro-kernel's slivers, as op(A) = A
    // always is. The arithmetic per element must be the same, so the two forms must agree bit
    // for bit: Conv2D's forward switched to the in-place form and its results must not move.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(12);
    for (Op op_b : ops)
        for (const auto [m, n, k] : {std::array<size_t, 3>{64, 196, 288},
                                     {288, 196, 64},
                                     {32, 784, 9},
                                     {100, 37, 600},
                                     {17, 20, 31},
                                     {1, 4, 5},
                                     {70, 63, 3},
                                     {5, 2, 1},
                                     // down-the-rows edges with partial row tiles under AVX-512
                                     // (the last one under AVX2 too; edge_down_rows_pays):
                                     {200, 35, 300},
                                     {130, 66, 7},
                                     {48, 36, 20}})
            for (float beta : betas)
                for (bool epilogue : {false, true}) {
                    if (epilogue && beta != 0.0f) continue; // a row bias needs beta == 0
                    INFO("op_b " << (op_b == Op::N ? 'N' : 'T') << " m " << m << " n " << n << " k " << k
                                 << " beta " << beta << " epilogue " << epilogue);
                    std::vector<float> a(m * k), at(k * m), b(k * n), bias(m), c0(m * n);
                    for (float& v : a) v = rng.uniform(-1.0f, 1.0f);
                    for (size_t i = 0; i < m; ++i)
                        for (size_t q = 0; q < k; ++q) at[q * m + i] = a[i * k + q];
                    for (float& v : b) v = rng.uniform(-1.0f, 1.0f);
                    for (float& v : bias) v = rng.uniform(-2.0f, 2.0f);
                    for (float& v : c0) v = rng.uniform(-1.0f, 1.0f);
                    const size_t ldb = op_b == Op::N ? n : k;
                    const pardl::Epilogue ep =
                        epilogue ? pardl::Epilogue{.row_bias = bias.data(), .relu = true} : pardl::Epilogue{};
                    std::vector<float> packed = c0, in_place = c0;
                    pardl::gemm(Op::N, op_b, m, n, k, a.data(), k, b.data(), ldb, beta, packed.data(), n, ep);
                    pardl::gemm(Op::T, op_b, m, n, k, at.data(), m, b.data(), ldb, beta, in_place.data(), n,
                                ep);
                    CHECK(std::memcmp(packed.data(), in_place.data(), packed.size() * sizeof(float)) == 0);
                }
}

TEST_CASE("gemm's narrow products have the bits of the same columns of a wider product", "[gemm]") {
    // A narrow C is computed as its transpose (gemm.hpp, run_transposed); a C with more
    // columns goes through the blocked product, whose arithmetic per element does not
    // depend on the other columns. So C's n columns must equal, bit for bit, the first n columns
    // of the product with B widened by more columns: every form, every beta, one k block or more.
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(31);
    constexpr size_t wide = 40;
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (const auto [m, n, k] : {std::array<size_t, 3>{64, 10, 128},
                                         {128, 10, 64},
                                         {13, 10, 7},
                                         {33, 1, 19},
                                         {64, 20, 128}, // narrower than AVX-512's 32-wide tile
                                         {50, 31, 40},
                                         {100, 15, 300}, // two k blocks
                                         {70, 9, 600}})  // past the dot-product kernels' k
                for (float beta : betas) {
                    INFO((op_a == Op::N ? 'N' : 'T') << (op_b == Op::N ? 'N' : 'T') << " m " << m << " n "
                                                     << n << " k " << k << " beta " << beta);
                    std::vector<float> a(m * k), b(k * wide), c0(m * wide);
                    for (float& v : a) v = rng.uniform(-1.0f, 1.0f);
                    for (float& v : b) v = rng.uniform(-1.0f, 1.0f);
                    for (float& v : c0) v = rng.uniform(-1.0f, 1.0f);
                    const size_t lda = op_a == Op::N ? k : m, ldb = op_b == Op::N ? wide : k;
                    // op(B)'s first n columns: the first n columns of B, or its first n rows.
                    std::vector<float> narrow(m * n), widened = c0;
                    for (size_t i = 0; i < m; ++i) std::copy_n(&c0[i * wide], n, &narrow[i * n]);
                    pardl::gemm(op_a, op_b, m, n, k, a.data(), lda, b.data(), ldb, beta, narrow.data(), n);
                    pardl::gemm(op_a, op_b, m, wide, k, a.data(), lda, b.data(), ldb, beta, widened.data(),
                                wide);
                    size_t differ = 0;
                    for (size_t i = 0; i < m; ++i)
                        differ += std::memcmp(&narrow[i * n], &widened[i * wide], n * sizeof(float)) != 0;
                    CHECK(differ == 0);
                }
}

TEST_CASE("gemm gives the same bits whether it packs an operand or reads it in place", "[gemm]") {
    // Row strides that are multiples of 512 floats make gemm pack a row-major B and a transposed
    // A, which it otherwise reads in place (gemm.hpp, crowded); on AVX2 a row-major B is packed
    // too where its rows lie a multiple of 256 floats apart and C has enough rows
    // (KernelSet::packs_readable_b). The packed copy must hold the same elements in the same
    // order: against a double reference, and bit for bit across strides 1024 (packed), 1280 (packed
    // on AVX2 from 8 slivers) and 1040 (in place), the same matrices. Slivers of 1, 3, 5 and 12-14
    // rows of a transposed A, over k blocks of 9 to 200 floats, take both of pack_a's copies (one
    // vector per k step, and the tail); 37 and 64 rows take both sides of the AVX2 rule.
#if defined(PARDL_GEMM_DISPATCH)
    // The strides and row counts below do take both sides of the AVX2 rule.
    using Avx2 = pardl::detail::gemm::avx2::Kernels;
    STATIC_REQUIRE(Avx2::packs_readable_b(64, 1280));
    STATIC_REQUIRE(!Avx2::packs_readable_b(64, 1040));
    STATIC_REQUIRE(!Avx2::packs_readable_b(37, 1280));
    STATIC_REQUIRE(Avx2::packs_readable_b(300, 1280));
    STATIC_REQUIRE(!Avx2::packs_readable_b(300, 1040));
    STATIC_REQUIRE(!pardl::detail::gemm::avx512::Kernels::packs_readable_b(300, 1280));
#endif
    PARDL_TEST_EACH_SUPPORTED_ISA();
    pardl::Rng rng(21);
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (float beta : betas) check(Problem{op_a, op_b, 200, 200, 200, beta, 312}, rng); // ld 512
    for (Op op_a : ops)
        for (Op op_b : ops)
            for (const auto [m, n, k] : {std::array<size_t, 3>{64, 196, 288},
                                         {37, 70, 300},
                                         {300, 45, 61},
                                         {5, 40, 70},
                                         {1, 40, 9},
                                         {3, 36, 600}})
                for (float beta : {0.0f, 1.0f}) {
                    INFO((op_a == Op::N ? 'N' : 'T') << (op_b == Op::N ? 'N' : 'T') << " m " << m << " n "
                                                     << n << " k " << k << " beta " << beta);
                    const size_t a_rows = op_a == Op::N ? m : k, b_rows = op_b == Op::N ? k : n;
                    std::vector<float> a(a_rows * 1024), b(b_rows * 1024), c0(m * n);
                    for (float& v : a) v = rng.uniform(-1.0f, 1.0f);
                    for (float& v : b) v = rng.uniform(-1.0f, 1.0f);
                    for (float& v : c0) v = rng.uniform(-1.0f, 1.0f);
                    std::vector<float> packed = c0;
                    pardl::gemm(op_a, op_b, m, n, k, a.data(), 1024, b.data(), 1024, beta, packed.data(), n);
                    for (const size_t ld : {size_t{1280}, size_t{1040}}) {
                        INFO("row stride " << ld);
                        std::vector<float> a2(a_rows * ld), b2(b_rows * ld);
                        for (size_t i = 0; i < a_rows; ++i) std::copy_n(&a[i * 1024], 1024, &a2[i * ld]);
                        for (size_t i = 0; i < b_rows; ++i) std::copy_n(&b[i * 1024], 1024, &b2[i * ld]);
                        std::vector<float> other = c0;
                        pardl::gemm(op_a, op_b, m, n, k, a2.data(), ld, b2.data(), ld, beta, other.data(), n);
                        CHECK(std::memcmp(packed.data(), other.data(), packed.size() * sizeof(float)) == 0);
                    }
                }
}

TEST_CASE("gemm's ReLU epilogue keeps NaN and maps negative zero to +0, as ReLU does", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // C = A * 1: one column of A per output; k == 1, so each output is exactly its A entry. 20
    // rows: whole vectors of the micro-kernels and the scalar edge both see every kind of value.
    const std::vector<float> kinds = {nan_f, -0.0f, -3.0f, 2.5f, std::numeric_limits<float>::infinity()};
    std::vector<float> a(20);
    for (size_t i = 0; i < a.size(); ++i) a[i] = kinds[i % kinds.size()];
    for (const size_t n : {1, 17}) { // one column of C, and C wider than one vector
        std::vector<float> wide_b(n, 1.0f), c(a.size() * n, 9.0f);
        pardl::gemm(Op::N, Op::N, a.size(), n, 1, a.data(), 1, wide_b.data(), n, 0.0f, c.data(), n,
                    pardl::Epilogue{.relu = true});
        for (size_t i = 0; i < a.size(); ++i)
            for (size_t j = 0; j < n; ++j) {
                const float y = c[i * n + j], x = a[i];
                INFO("row " << i << " column " << j << " of " << n << ": x = " << x << ", y = " << y);
                if (std::isnan(x)) {
                    CHECK(std::isnan(y));
                } else {
                    CHECK(y == (x > 0.0f ? x : 0.0f));
                    CHECK_FALSE(std::signbit(y));
                }
            }
    }
}

TEST_CASE("gemm over views", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // A is 2 x 3 inside a 2 x 4 buffer; B^T is read from a 2 x 3 matrix; C is a 2 x 2 view with stride 3.
    const std::vector<float> a = {1, 2, 3, -1, 4, 5, 6, -1};
    const std::vector<float> bt = {1, 0, 1, 0, 1, 0};
    std::vector<float> c(6, 7.0f);
    pardl::gemm(Op::N, pardl::ConstMatrix(a.data(), 2, 3, 4), Op::T, pardl::ConstMatrix(bt.data(), 2, 3),
                pardl::Matrix(c.data(), 2, 2, 3), 1.0f);
    CHECK(c == std::vector<float>{7 + 4, 7 + 2, 7, 7 + 10, 7 + 5, 7});
}

TEST_CASE("transpose moves every element and nothing else", "[gemm][transpose]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    // Whole register blocks, ragged ones on either side, and strided rows in and out.
    pardl::Rng rng(3);
    for (const size_t rows : {1, 7, 16, 17, 40})
        for (const size_t cols : {1, 15, 16, 33}) {
            const size_t lds = cols + 3, ldd = rows + 2;
            std::vector<float> src(rows * lds), dst(cols * ldd, -9.0f);
            for (float& v : src) v = rng.uniform(-1.0f, 1.0f);
            pardl::transpose(rows, cols, src.data(), lds, dst.data(), ldd);
            INFO(rows << " x " << cols);
            size_t wrong = 0;
            for (size_t j = 0; j < cols; ++j)
                for (size_t i = 0; i < ldd; ++i) {
                    const float want = i < rows ? src[i * lds + j] : -9.0f; // beyond the rows: untouched
                    wrong += dst[j * ldd + i] != want;
                }
            CHECK(wrong == 0);
        }
}

TEST_CASE("gemm is safe to call from several threads at once", "[gemm]") {
    PARDL_TEST_EACH_SUPPORTED_ISA();
    constexpr size_t threads = 4;
    std::vector<Outcome> outcomes(threads);
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t)
        pool.emplace_back([t, &outcomes] {
            pardl::Rng rng(100 + t);
            Outcome worst;
            for (int rep = 0; rep < 3; ++rep) {
                const Outcome o = run_and_compare(
                    {t % 2 ? Op::T : Op::N, t / 2 ? Op::T : Op::N, 61 + 3 * t, 300 - 7 * t, 290 + t, 1.0f, 1},
                    rng);
                worst.worst_ratio = std::max(worst.worst_ratio, o.worst_ratio);
                worst.padding_intact = worst.padding_intact && o.padding_intact;
            }
            outcomes[t] = worst;
        });
    for (auto& th : pool) th.join();
    for (const Outcome& o : outcomes) {
        CHECK(o.worst_ratio <= 1.0);
        CHECK(o.padding_intact);
    }
}

TEST_CASE("the dispatcher picks the best instruction set this CPU runs", "[simd]") {
#if defined(PARDL_TEST_PORTABLE_BUILD)
    // Otherwise this executable would not show that run-time dispatch provides the wide kernels.
    CHECK_FALSE(XSIMD_WITH_AVX);
#endif
    const std::vector<Isa> expected = expected_supported();
    const std::vector<Isa> supported(pardl::simd::supported().begin(), pardl::simd::supported().end());
    INFO("expected: " << names(expected) << "; simd::supported(): " << names(supported));
    CHECK(supported == expected);
    if (const char* env = std::getenv("PARDL_SIMD"); env != nullptr && *env != '\0')
        WARN("PARDL_SIMD=" << env << " is set: the default choice is not checked");
    else
        CHECK(pardl::simd::active() == expected.back());
}

TEST_CASE("PARDL_SIMD accepts exactly the instruction set names the CPU runs", "[simd]") {
    using Catch::Matchers::Contains;
    using pardl::ConfigError;
    using pardl::simd::detail::choose;
    const std::vector<Isa> all = {Isa::generic, Isa::avx2, Isa::avx512};
    const std::vector<Isa> only_generic = {Isa::generic};

    CHECK(choose(nullptr, all) == Isa::avx512);
    CHECK(choose("", all) == Isa::avx512);
    CHECK(choose("generic", all) == Isa::generic);
    CHECK(choose("avx2", all) == Isa::avx2);
    CHECK(choose("avx512", all) == Isa::avx512);
    CHECK(choose(nullptr, only_generic) == Isa::generic);
    CHECK(choose("generic", only_generic) == Isa::generic);

    for (const char* bad : {"AVX2", "avx", "sse2", "avx512f", " avx2", "native"}) {
        INFO("PARDL_SIMD=" << bad);
        CHECK_THROWS_AS(choose(bad, all), ConfigError);
        CHECK_THROWS_WITH(choose(bad, all), Contains("generic, avx2, avx512"));
    }
    CHECK_THROWS_AS(choose("avx512", only_generic), ConfigError);
    CHECK_THROWS_WITH(choose("avx2", only_generic), Contains("runs only generic"));
}

TEST_CASE("ScopedIsa forces an instruction set and restores the previous one", "[simd]") {
    const Isa before = pardl::simd::active();
    const Isa best = pardl::simd::supported().back();
    {
        const pardl::simd::ScopedIsa outer(Isa::generic);
        CHECK(pardl::simd::active() == Isa::generic);
        {
            const pardl::simd::ScopedIsa inner(best);
            CHECK(pardl::simd::active() == best);
        }
        CHECK(pardl::simd::active() == Isa::generic);
    }
    CHECK(pardl::simd::active() == before);
    for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
        if (!pardl::simd::is_supported(isa)) CHECK_THROWS_AS(pardl::simd::ScopedIsa(isa), pardl::ConfigError);
}

// Hidden: CTest runs these with PARDL_SIMD set (tests/tests.cmake).
TEST_CASE("PARDL_SIMD=generic selects the portable kernels", "[.][simd-env-generic]") {
    REQUIRE(std::string(std::getenv("PARDL_SIMD") ? std::getenv("PARDL_SIMD") : "") == "generic");
    CHECK(pardl::simd::active() == Isa::generic);
}

TEST_CASE("an unknown PARDL_SIMD makes active() throw ConfigError", "[.][simd-env-unknown]") {
    REQUIRE(std::getenv("PARDL_SIMD") != nullptr);
    CHECK_THROWS_AS(pardl::simd::active(), pardl::ConfigError);
}
