// Single-precision matrix multiply C = op(A) op(B) + beta C on row-major matrices: the kernel under
// Dense and im2col convolution. BLIS recipe: packed panels, cache blocking and an xsimd
// register-blocked micro-kernel for the widest instruction set the compiler targets.
#pragma once

#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/view.hpp"

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__) && !defined(PARDL_GEMM_SCALAR)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <type_traits>
#include <utility>

namespace pardl {

/// How an operand enters the product: as stored (N) or transposed (T).
enum class Op { N, T };

namespace detail::gemm {

using std::size_t;

// The micro-kernel broadcasts MR elements of op(A) against NV vectors of op(B) per k step, keeping
// MR * NV accumulators in registers. The shapes leave room for the NV B vectors and one broadcast.
// Zen 4 double-pumps 512-bit FMAs (one per cycle, latency 4), so 24 accumulators hide the latency
// with margin and the 14 loads per 24 FMAs stay well under the two load ports.
#if defined(PARDL_GEMM_SCALAR)
// Forces the portable path, so that it can be tested on machines that have SIMD.
using Arch = void;
inline constexpr int mr_max = 4;
inline constexpr int nv_max = 4;
#elif XSIMD_WITH_AVX512F
using Arch = xsimd::default_arch;
inline constexpr int mr_max = 12;
inline constexpr int nv_max = 2;
#elif XSIMD_WITH_FMA3_AVX2 || XSIMD_WITH_AVX2 || XSIMD_WITH_AVX
using Arch = xsimd::default_arch;
inline constexpr int mr_max = 6; // 16 ymm registers: 12 accumulators + 2 B vectors + 1 broadcast
inline constexpr int nv_max = 2;
#elif XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64
using Arch = xsimd::default_arch;
inline constexpr int mr_max = 6;
inline constexpr int nv_max = 2;
#else
using Arch = void; // no SIMD instruction set: plain floats, which the compiler may still vectorise
inline constexpr int mr_max = 4;
inline constexpr int nv_max = 4;
#endif

/// Uniform vector operations, so that one kernel template serves SIMD and scalar builds.
template <class A>
struct Simd {
    using V = xsimd::batch<float, A>;
    static constexpr int width = static_cast<int>(V::size);
    static V load(const float* p) noexcept { return V::load_unaligned(p); }
    static void store(float* p, V v) noexcept { v.store_unaligned(p); }
    static V set1(float x) noexcept { return V(x); }
    static V fma(V a, V b, V c) noexcept { return xsimd::fma(a, b, c); }
};

template <>
struct Simd<void> {
    using V = float;
    static constexpr int width = 1;
    static V load(const float* p) noexcept { return *p; }
    static void store(float* p, V v) noexcept { *p = v; }
    static V set1(float x) noexcept { return x; }
    static V fma(V a, V b, V c) noexcept { return a * b + c; }
};

using S = Simd<Arch>;
inline constexpr int lanes = S::width;
inline constexpr int nr_max = nv_max * lanes;

// KC bounds the k extent of one packed B panel and one A sliver: the A sliver (MR x KC, 12 KiB)
// stays in the 32 KiB L1d while B panels stream past it. KC x NC (512 KiB) is the B panel that
// every A sliver sweeps, sized to stay in the 1 MiB L2 together with the A and C traffic.
inline constexpr size_t kc_max = 256;
inline constexpr size_t nc_max = 512; // a multiple of nr_max
static_assert(nc_max % nr_max == 0);

/// Scales C by beta (the whole product when k == 0); beta == 0 writes zeros without reading.
inline void scale(size_t m, size_t n, float beta, float* c, size_t ldc) noexcept {
    for (size_t i = 0; i < m; ++i) {
        float* row = c + i * ldc;
        if (beta == 0.0f)
            std::fill_n(row, n, 0.0f);
        else if (beta != 1.0f)
            for (size_t j = 0; j < n; ++j) row[j] *= beta;
    }
}

/// C(MR x nr) = sum_p a(p) b(p)^T + beta C, where a(p) = a + p * a_step holds MR elements of a
/// column of op(A) and b(p) = b + p * b_step holds NV * lanes elements of a row of op(B) (padded
/// beyond nr). Reading A and B through steps lets unpacked operands stand in for packed ones.
template <int MR, int NV>
void micro_kernel(size_t kc, const float* a, size_t a_step, const float* b, size_t b_step, float* c,
                  size_t ldc, size_t nr, float beta) noexcept {
    using V = S::V;
    V acc[MR][NV];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = S::set1(0.0f);

    for (size_t p = 0; p < kc; ++p) {
        V bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * lanes);
        for (int i = 0; i < MR; ++i) {
            const V ai = S::set1(a[i]);
            for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
        }
        a += a_step;
        b += b_step;
    }

    if (nr == static_cast<size_t>(NV * lanes)) {
        for (int i = 0; i < MR; ++i) {
            float* row = c + i * ldc;
            for (int v = 0; v < NV; ++v) {
                float* dst = row + v * lanes;
                // beta == 0 must not read C: it may hold NaN or garbage.
                if (beta == 0.0f)
                    S::store(dst, acc[i][v]);
                else if (beta == 1.0f)
                    S::store(dst, S::load(dst) + acc[i][v]);
                else
                    S::store(dst, S::fma(S::set1(beta), S::load(dst), acc[i][v]));
            }
        }
        return;
    }
    // A ragged right edge goes through a tile on the stack so stores never pass column n.
    alignas(64) float tile[MR][NV * lanes];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) S::store(&tile[i][v * lanes], acc[i][v]);
    for (int i = 0; i < MR; ++i) {
        float* row = c + i * ldc;
        if (beta == 0.0f)
            for (size_t j = 0; j < nr; ++j) row[j] = tile[i][j];
        else
            for (size_t j = 0; j < nr; ++j) row[j] = beta * row[j] + tile[i][j];
    }
}

using KernelFn = void (*)(size_t, const float*, size_t, const float*, size_t, float*, size_t, size_t,
                          float) noexcept;

// Every (rows, vectors) pair gets its own fully unrolled kernel, so edge slivers keep their
// accumulators in registers instead of computing a padded full tile.
template <size_t... I>
constexpr auto make_kernel_table(std::index_sequence<I...>) {
    return std::array<KernelFn, sizeof...(I)>{
        &micro_kernel<static_cast<int>(I / nv_max) + 1, static_cast<int>(I % nv_max) + 1>...};
}
inline constexpr auto kernel_table = make_kernel_table(std::make_index_sequence<mr_max * nv_max>{});

inline KernelFn kernel_for(size_t mr, size_t nv) noexcept {
    assert(mr >= 1 && mr <= static_cast<size_t>(mr_max) && nv >= 1 && nv <= static_cast<size_t>(nv_max));
    return kernel_table[(mr - 1) * nv_max + (nv - 1)];
}

/// Per-thread packing space. It only grows, so steady-state calls never touch the heap, and each
/// thread owns its own, so concurrent calls from executor workers never share it.
struct Workspace {
    AlignedBuffer<float> a; // one A sliver: kc x mr
    AlignedBuffer<float> b; // one B panel: kc x nc, as nr_max-wide slivers

    static Workspace& local() {
        thread_local Workspace ws;
        return ws;
    }
    static float* reserve(AlignedBuffer<float>& buf, size_t n) {
        if (buf.size() < n) buf.resize(n);
        return buf.data();
    }
};

#if defined(__AVX512F__) && !defined(PARDL_GEMM_SCALAR)
/// Transposes a rows x 16 block (rows <= 16; missing rows read as zero) into 16 columns, storing
/// the first `count` elements of column q at dst + q * ldd. Packing is a transposition for op(A) = A
/// and op(B) = B^T; element by element it costs as much as the whole product when m or n is ~64.
inline void transpose_16(const float* src, size_t lds, size_t rows, float* dst, size_t ldd,
                         size_t count) noexcept {
    // The all-lanes masked forms: GCC 12's unmasked ones start from _mm512_undefined_ps(), which
    // trips -Wuninitialized in every translation unit that includes this header.
    constexpr __mmask16 all = 0xFFFF;
    const auto unpacklo = [](__m512 x, __m512 y) { return _mm512_mask_unpacklo_ps(x, all, x, y); };
    const auto unpackhi = [](__m512 x, __m512 y) { return _mm512_mask_unpackhi_ps(x, all, x, y); };
    __m512 r[16];
    for (size_t i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src + i * lds) : _mm512_setzero_ps();
    // Within each 128-bit lane: pairs, then 4 x 4 blocks; finally the lanes themselves.
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = unpacklo(r[i], r[i + 1]);
        t[i + 1] = unpackhi(r[i], r[i + 1]);
    }
    __m512 u[16]; // u[4g + c], lane l: column 4l + c of rows 4g .. 4g + 3
    for (int g = 0; g < 4; ++g) {
        const __m512 lo0 = t[4 * g], hi0 = t[4 * g + 1], lo1 = t[4 * g + 2], hi1 = t[4 * g + 3];
        u[4 * g + 0] = _mm512_mask_shuffle_ps(lo0, all, lo0, lo1, 0x44);
        u[4 * g + 1] = _mm512_mask_shuffle_ps(lo0, all, lo0, lo1, 0xEE);
        u[4 * g + 2] = _mm512_mask_shuffle_ps(hi0, all, hi0, hi1, 0x44);
        u[4 * g + 3] = _mm512_mask_shuffle_ps(hi0, all, hi0, hi1, 0xEE);
    }
    const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1u);
    for (int c = 0; c < 4; ++c) {
        const __m512 a0 = u[c], a1 = u[4 + c], a2 = u[8 + c], a3 = u[12 + c];
        const __m512 v0 = _mm512_mask_shuffle_f32x4(a0, all, a0, a1, 0x44);
        const __m512 v1 = _mm512_mask_shuffle_f32x4(a0, all, a0, a1, 0xEE);
        const __m512 v2 = _mm512_mask_shuffle_f32x4(a2, all, a2, a3, 0x44);
        const __m512 v3 = _mm512_mask_shuffle_f32x4(a2, all, a2, a3, 0xEE);
        _mm512_mask_storeu_ps(dst + (c + 0) * ldd, mask, _mm512_mask_shuffle_f32x4(v0, all, v0, v2, 0x88));
        _mm512_mask_storeu_ps(dst + (c + 4) * ldd, mask, _mm512_mask_shuffle_f32x4(v0, all, v0, v2, 0xDD));
        _mm512_mask_storeu_ps(dst + (c + 8) * ldd, mask, _mm512_mask_shuffle_f32x4(v1, all, v1, v3, 0x88));
        _mm512_mask_storeu_ps(dst + (c + 12) * ldd, mask, _mm512_mask_shuffle_f32x4(v1, all, v1, v3, 0xDD));
    }
}
inline constexpr size_t transpose_block = 16;
#else
inline constexpr size_t transpose_block = 0; // no vector transposition: element by element
#endif

/// dst[p * ldd + i] = src[i * lds + p] for i < rows, p < kc, and zero for rows <= i < width.
inline void pack_transposed(const float* src, size_t lds, size_t rows, size_t width, size_t kc, float* dst,
                            size_t ldd) noexcept {
    size_t p = 0;
#if defined(__AVX512F__) && !defined(PARDL_GEMM_SCALAR)
    for (; p + transpose_block <= kc; p += transpose_block)
        for (size_t i = 0; i < width; i += 16) {
            const size_t n_rows = rows > i ? std::min<size_t>(16, rows - i) : 0;
            transpose_16(src + i * lds + p, lds, n_rows, dst + p * ldd + i, ldd,
                         std::min<size_t>(16, width - i));
        }
#endif
    for (; p < kc; ++p) {
        float* d = dst + p * ldd;
        for (size_t i = 0; i < rows; ++i) d[i] = src[i * lds + p];
        for (size_t i = rows; i < width; ++i) d[i] = 0.0f;
    }
}

/// Packs rows [0, mr) x columns [0, kc) of op(A) = A (row-major, from `a`) as kc groups of mr.
inline void pack_a_rows(size_t mr, size_t kc, const float* a, size_t lda, float* dst) noexcept {
    pack_transposed(a, lda, mr, mr, kc, dst, mr);
}

/// Packs a kc x nc block of op(B) into slivers of nr_max columns (kc rows each, zero-padded past
/// nc). `b` points at op(B)(p0, j0); op(B) = B is read along rows, op(B) = B^T along columns.
inline void pack_b(Op op_b, size_t kc, size_t nc, const float* b, size_t ldb, float* dst) noexcept {
    for (size_t j = 0; j < nc; j += nr_max) {
        const size_t nr = std::min<size_t>(nr_max, nc - j);
        float* d = dst + j * kc;
        if (op_b == Op::N) {
            const float* src = b + j;
            for (size_t p = 0; p < kc; ++p, d += nr_max, src += ldb) {
                std::copy_n(src, nr, d);
                std::fill(d + nr, d + nr_max, 0.0f);
            }
        } else {
            pack_transposed(b + j * ldb, ldb, nr, nr_max, kc, d, nr_max);
        }
    }
}

/// Splits `total` into `parts` contiguous pieces whose sizes differ by at most one.
constexpr size_t piece_begin(size_t total, size_t parts, size_t i) noexcept {
    return total / parts * i + std::min(i, total % parts);
}

inline void run(Op op_a, Op op_b, size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                size_t ldb, float beta, float* c, size_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale(m, n, beta, c, ldc);
        return;
    }
    // Balanced splits: a 784-deep product becomes 4 x 196 rather than 3 x 256 + 16, and 64 rows
    // become slivers of 11 and 10 rather than 12 x 5 + 4.
    const size_t k_parts = (k + kc_max - 1) / kc_max;
    const size_t m_parts = (m + mr_max - 1) / mr_max;
    const size_t kc_cap = (k + k_parts - 1) / k_parts;
    const size_t nc_cap = std::min(nc_max, (n + nr_max - 1) / nr_max * nr_max);

    Workspace& ws = Workspace::local();
    float* const a_buf = Workspace::reserve(ws.a, kc_cap * mr_max);
    // Row-major B already holds each sliver's k rows contiguously: read it in place and pack only
    // ragged right-edge slivers (into the panel buffer's first sliver slot).
    const bool direct_b = op_b == Op::N;
    float* const b_buf = Workspace::reserve(ws.b, kc_cap * (direct_b ? nr_max : nc_cap));
    // Transposed A likewise holds each sliver's mr elements contiguously for every k.
    const bool direct_a = op_a == Op::T;

    for (size_t jc = 0; jc < n; jc += nc_max) {
        const size_t nc = std::min(nc_max, n - jc);
        for (size_t kp = 0; kp < k_parts; ++kp) {
            const size_t pc = piece_begin(k, k_parts, kp);
            const size_t kc = piece_begin(k, k_parts, kp + 1) - pc;
            // Later k blocks add onto what the first one wrote.
            const float beta_k = kp == 0 ? beta : 1.0f;

            const float* b_panel;
            size_t b_step;
            if (direct_b) {
                b_panel = b + pc * ldb + jc;
                b_step = ldb;
            } else {
                pack_b(op_b, kc, nc, b + jc * ldb + pc, ldb, b_buf);
                b_panel = b_buf;
                b_step = nr_max;
            }
            // A ragged direct-B sliver is packed once per (jc, kc) block, not once per A sliver.
            const size_t nr_edge = nc % nr_max;
            const size_t nc_full = nc - nr_edge;
            if (direct_b && nr_edge != 0) pack_b(Op::N, kc, nr_edge, b_panel + nc_full, ldb, b_buf);

            for (size_t ip = 0; ip < m_parts; ++ip) {
                const size_t ic = piece_begin(m, m_parts, ip);
                const size_t mr = piece_begin(m, m_parts, ip + 1) - ic;
                const float* a_sliver;
                size_t a_step;
                if (direct_a) {
                    a_sliver = a + pc * lda + ic;
                    a_step = lda;
                } else {
                    pack_a_rows(mr, kc, a + ic * lda + pc, lda, a_buf);
                    a_sliver = a_buf;
                    a_step = mr;
                }
                float* c_rows = c + ic * ldc + jc;
                const KernelFn full = kernel_for(mr, nv_max);
                for (size_t jr = 0; jr < nc_full; jr += nr_max) {
                    const float* b_sliver = direct_b ? b_panel + jr : b_panel + jr * kc;
                    full(kc, a_sliver, a_step, b_sliver, b_step, c_rows + jr, ldc, nr_max, beta_k);
                }
                if (nr_edge != 0) {
                    const size_t nv = (nr_edge + lanes - 1) / lanes;
                    const float* b_sliver = direct_b ? b_buf : b_panel + nc_full * kc;
                    kernel_for(mr, nv)(kc, a_sliver, a_step, b_sliver, nr_max, c_rows + nc_full, ldc, nr_edge,
                                       beta_k);
                }
            }
        }
    }
}

} // namespace detail::gemm

/// C(m x n) = op(A)(m x k) * op(B)(k x n) + beta * C on row-major storage; lda, ldb and ldc are
/// the elements between row starts of the matrices as stored (A is k x m when op_a == T).
/// beta == 0 overwrites C without reading it (it may hold NaN); k == 0 gives C = beta * C.
/// Thread-safe: each calling thread packs into its own buffers, which grow on first use only.
inline void gemm(Op op_a, Op op_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
    detail::gemm::run(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
}

/// C = op(A) op(B) + beta C over views; the shapes must agree (checked with assert).
inline void gemm(Op op_a, ConstMatrix a, Op op_b, ConstMatrix b, Matrix c, float beta) {
    const std::size_t m = op_a == Op::N ? a.rows : a.cols;
    const std::size_t k = op_a == Op::N ? a.cols : a.rows;
    const std::size_t n = op_b == Op::N ? b.cols : b.rows;
    [[maybe_unused]] const std::size_t kb = op_b == Op::N ? b.rows : b.cols;
    assert(k == kb && "gemm: inner dimensions of op(A) and op(B) differ");
    assert(c.rows == m && c.cols == n && "gemm: C does not have the shape of op(A) op(B)");
    gemm(op_a, op_b, m, n, k, a.data, a.stride, b.data, b.stride, beta, c.data, c.stride);
}

} // namespace pardl
