// Single-precision matrix multiply C = op(A) op(B) + beta C on row-major matrices: the kernel under
// Dense and im2col convolution. BLIS recipe: packed panels, cache blocking and a register-blocked
// micro-kernel, compiled for several instruction sets and chosen at run time (simd::active()).
#pragma once

#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/simd.hpp"
#include "pardl/tensor/view.hpp"

#include <xsimd/xsimd.hpp>

#if defined(PARDL_SIMD_X86) && !defined(PARDL_GEMM_SCALAR)
/// Defined when gemm() has AVX2 and AVX-512 kernels to choose from at run time.
#define PARDL_GEMM_DISPATCH 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <utility>

/// Unrolls the next loop completely, at -O2 too: the block transpositions below keep their 8 or 16
/// vectors in arrays, which GCC 12 at -O2 left on the stack (their loops not unrolled), and the
/// packing that uses them ran at half the speed of -O3.
#define PARDL_UNROLL_ALL _Pragma("GCC unroll 16")

namespace pardl {

/// How an operand enters the product: as stored (N) or transposed (T).
enum class Op { N, T };

/// What gemm() applies to C in the micro-kernel's registers, before C reaches memory: a bias per
/// row of C, added to the first k block's partial sum (the same arithmetic as filling C with the
/// bias and calling gemm with beta = 1), and then ReLU (x <= 0 ? +0 : x, NaN kept) on the finished sum. It
/// saves a layer the passes over its output that would otherwise do the same.
struct Epilogue {
    const float* row_bias = nullptr; ///< m values, or null; needs beta == 0
    bool relu = false;
};

namespace detail::gemm {

using std::size_t;

using KernelFn = void (*)(size_t, const float*, size_t, const float*, size_t, float*, size_t, size_t, float,
                          const float*, bool) noexcept;

// KC bounds the k extent of one packed B panel and one A sliver: the A sliver (MR x KC, 14 KiB)
// stays in the 32 KiB L1d while B panels stream past it. KC x NC (512 KiB) is the B panel that
// every A sliver sweeps, sized to stay in the 1 MiB L2 together with the A and C traffic.
inline constexpr size_t kc_max = 256;
inline constexpr size_t nc_max = 512; // a multiple of every instruction set's nr_max

/// The table of Kernels::micro_kernel<rows, vectors>, indexed (rows - 1) * nv_max + vectors - 1.
template <class Kernels, size_t... I>
constexpr std::array<KernelFn, sizeof...(I)> make_kernel_table(std::index_sequence<I...>) {
    return {&Kernels::template micro_kernel<static_cast<int>(I) / Kernels::nv_max + 1,
                                            static_cast<int>(I) % Kernels::nv_max + 1>...};
}

// Each instruction set below defines Vec (see gemm_kernels.ipp) and gets its Kernels from the one
// kernel text. The micro-kernel broadcasts MR elements of op(A) against NV vectors of op(B) per k
// step, keeping MR * NV accumulators in registers; the tile shapes leave room for the NV B vectors
// and one broadcast. Zen 4 double-pumps 512-bit FMAs (one per cycle, latency 4), so 28 AVX-512
// accumulators hide the latency with margin and the 16 loads per 28 FMAs stay well under the two
// load ports.

/// The sum of 16 lanes by halving: lane l + lane l + 8, then l + 4, l + 2 and l + 1 of those. The
/// dot-product kernel's order on every instruction set (each Vec's sum16, where it has one, adds
/// the same pairs with shuffles).
inline float sum16_by_halving(const float* x) noexcept {
    float s[8];
    for (int l = 0; l < 8; ++l) s[l] = x[l] + x[l + 8];
    for (int l = 0; l < 4; ++l) s[l] += s[l + 4];
    for (int l = 0; l < 2; ++l) s[l] += s[l + 2];
    return s[0] + s[1];
}

/// xsimd batches of the architecture the compiler targets.
template <class Arch>
struct XsimdVec {
    using V = xsimd::batch<float, Arch>;
    static constexpr int width = static_cast<int>(V::size);
    static V load(const float* p) noexcept { return V::load_unaligned(p); }
    /// The first `count` (1 .. width) floats at p, zeros after them; reads nothing beyond.
    static V load_first(const float* p, size_t count) noexcept {
        alignas(64) float part[width] = {};
        std::copy_n(p, count, part);
        return V::load_aligned(part);
    }
    static void store(float* p, V v) noexcept { v.store_unaligned(p); }
    static V set1(float x) noexcept { return V(x); }
    static V add(V a, V b) noexcept { return a + b; }
    static V fma(V a, V b, V c) noexcept { return xsimd::fma(a, b, c); }
    static V relu(V a) noexcept { return xsimd::select(a <= V(0.0f), V(0.0f), a); }
    static constexpr size_t transpose_block = 0;
};

/// Plain floats, which the compiler may still vectorise.
struct ScalarVec {
    using V = float;
    static constexpr int width = 1;
    static V load(const float* p) noexcept { return *p; }
    static V load_first(const float* p, size_t count) noexcept { return count != 0 ? *p : 0.0f; }
    static void store(float* p, V v) noexcept { *p = v; }
    static V set1(float x) noexcept { return x; }
    static V add(V a, V b) noexcept { return a + b; }
    static V fma(V a, V b, V c) noexcept { return a * b + c; }
    static V relu(V a) noexcept { return a <= 0.0f ? 0.0f : a; }
    static constexpr size_t transpose_block = 0;
};

/// The portable path: whatever the compiler flags allow, decided at compile time.
namespace generic {
#if defined(PARDL_GEMM_SCALAR)
// Forces the portable scalar path, so that it can be tested on machines that have SIMD.
struct Vec : ScalarVec {
    static constexpr int mr_max = 4, nv_max = 4;
    static constexpr int dot_rows = 1, dot_cols = 1; // as the scalar fallback's below, which says why
};
#elif XSIMD_WITH_AVX512F
// On x86 the dispatcher runs the intrinsics kernels below; this path is the fallback that
// PARDL_SIMD=generic forces. A 6 x 2 tile (the AVX2 one) halves its table of micro-kernels, which
// every program that includes this header compiles, at some of this fallback's speed.
struct Vec : XsimdVec<xsimd::default_arch> {
    static constexpr int mr_max = 6, nv_max = 2;
    static constexpr int dot_rows = 3, dot_cols = 2;
};
#elif XSIMD_WITH_FMA3_AVX2 || XSIMD_WITH_AVX2 || XSIMD_WITH_AVX
struct Vec : XsimdVec<xsimd::default_arch> {
    static constexpr int mr_max = 6, nv_max = 2;       // 16 ymm: 12 accumulators + 2 B vectors + 1 broadcast
    static constexpr int dot_rows = 3, dot_cols = 1;   // as avx2::Vec's, which says why
    static constexpr size_t packed_b_row_stride = 256; // as avx2::Vec's
};
#elif XSIMD_WITH_SSE2
// 16 xmm registers, as AVX2's 16 ymm: an accumulator is four vectors, and the 3 x 2 dot tile's 24
// of them spilled. The dot kernel for W-CNN's conv1 weight gradient (9 x 32, k = 784), built for
// plain x86-64 on an AMD EPYC Zen 3 guest, both tiles taking turns: 15-19 GFLOP/s with 3 x 2,
// 21-25 with 3 x 1 (2 x 1 and 1 x 2 about as fast, 2 x 2 and 1 x 1 slower).
struct Vec : XsimdVec<xsimd::default_arch> {
    static constexpr int mr_max = 6, nv_max = 2;
    static constexpr int dot_rows = 3, dot_cols = 1;
};
#elif XSIMD_WITH_NEON || XSIMD_WITH_NEON64
// NEON has 32 registers: the 3 x 2 dot tile keeps its 24 accumulator vectors (kept: not measured,
// no such machine).
struct Vec : XsimdVec<xsimd::default_arch> {
    static constexpr int mr_max = 6, nv_max = 2;
    static constexpr int dot_rows = 3, dot_cols = 2;
};
#else
struct Vec : ScalarVec {
    static constexpr int mr_max = 4, nv_max = 4;
    // One element at a time: its 16 lane sums are then the whole tile, which GCC vectorises. With
    // a 3 x 2 tile (96 sums) it did not: the same 9 x 32 x 784 dot product as above, compiled for
    // plain x86-64 with PARDL_GEMM_SCALAR, ran at 2-3 GFLOP/s, and at 16-22 with 1 x 1.
    static constexpr int dot_rows = 1, dot_cols = 1;
};
#endif
#include "pardl/tensor/gemm_kernels.ipp"
} // namespace generic

#if defined(PARDL_GEMM_DISPATCH)
namespace avx2 {
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX2)
struct Vec {
    using V = __m256;
    static constexpr int width = 8;
    static constexpr int mr_max = 6, nv_max = 2; // 16 ymm: 12 accumulators + 2 B vectors + 1 broadcast
    // 3 x 1 dot tiles: 3 accumulators of two ymm each, the 6 row and 2 column vectors of a k step
    // beside them in 14 of the 16 registers. The 3 x 2 tile's 6 accumulators (12 ymm) left no room
    // for its 10 loaded vectors, and GCC spilled: W-CNN's first convolution's weight gradient (bench_conv
    // conv1/backward_weights) took 876-944 us a batch with it, 670-788 with this one (AMD EPYC Zen
    // 3 guest; 2 x 2 took 1289-1377, 4 x 1 and 5 x 1, which spill too, 1188-1486). Compiled for
    // AVX2, the 3 x 2 kernel reads and writes the stack 30 times, this one not at all.
    static constexpr int dot_rows = 3, dot_cols = 1;
    /// A row-major B whose rows lie a multiple of 1 KiB apart is packed, not read in place, where
    /// 8 A slivers share the copy (KernelSet::packs_readable_b says why).
    static constexpr size_t packed_b_row_stride = 256;
    /// Makes the compiler hold v in a register (KernelSet::load_once).
    static void in_register(V& v) noexcept { asm("" : "+x"(v)); }
    static V load(const float* p) noexcept { return _mm256_loadu_ps(p); }
    static V load_first(const float* p, size_t count) noexcept {
        return _mm256_maskload_ps(p, simd::first_lanes_avx2(count));
    }
    static void store(float* p, V v) noexcept { _mm256_storeu_ps(p, v); }
    static V set1(float x) noexcept { return _mm256_set1_ps(x); }
    static V add(V a, V b) noexcept { return _mm256_add_ps(a, b); }
    static V fma(V a, V b, V c) noexcept { return _mm256_fmadd_ps(a, b, c); }
    /// Zero where a <= 0 (false for NaN, which stays): exactly ReLU's a <= 0 ? +0 : a.
    static V relu(V a) noexcept {
        return _mm256_andnot_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LE_OQ), a);
    }

    /// out[t] = sum16_by_halving(lanes + 16 t) for t < count, eight sums per round of shuffles.
    static void sum16(const float* lanes, int count, float* out) noexcept {
        for (int g = 0; g < count; g += 8) {
            __m256 s[8]; // s[i]: lanes l + (l + 8) of accumulator g + i
            for (int i = 0; i < 8; ++i) {
                const float* x = lanes + 16 * (g + i);
                s[i] = g + i < count ? _mm256_add_ps(_mm256_load_ps(x), _mm256_load_ps(x + 8))
                                     : _mm256_setzero_ps();
            }
            __m256 y[4]; // 128-bit half h: accumulator 2j + h's l + (l + 4)
            for (int j = 0; j < 4; ++j)
                y[j] = _mm256_add_ps(_mm256_permute2f128_ps(s[2 * j], s[2 * j + 1], 0x20),
                                     _mm256_permute2f128_ps(s[2 * j], s[2 * j + 1], 0x31));
            __m256 w[2]; // half q: the l + (l + 2) pairs of accumulators 4h + q and 4h + 2 + q
            for (int h = 0; h < 2; ++h)
                w[h] = _mm256_add_ps(_mm256_shuffle_ps(y[2 * h], y[2 * h + 1], 0x44),
                                     _mm256_shuffle_ps(y[2 * h], y[2 * h + 1], 0xEE));
            // Element 4q + t: the sum of accumulator g + 2t + q.
            alignas(32) float v[8];
            _mm256_store_ps(
                v, _mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], 0x88), _mm256_shuffle_ps(w[0], w[1], 0xDD)));
            for (int t = 0; g + t < count && t < 8; ++t) out[g + t] = v[4 * (t % 2) + t / 2];
        }
    }

    static constexpr size_t transpose_block = 8;
    /// Transposes a rows x cols block (rows, cols <= 8; missing rows read as zero) into cols
    /// columns, storing the first `count` elements of column q at dst + q * ldd. Reads nothing
    /// past a row's cols floats and writes no column past cols.
    static void transpose(const float* src, size_t lds, size_t rows, size_t cols, float* dst, size_t ldd,
                          size_t count) noexcept {
        const __m256i present = simd::first_lanes_avx2(cols);
        __m256 r[8];
        PARDL_UNROLL_ALL
        for (size_t i = 0; i < 8; ++i)
            r[i] = i < rows ? _mm256_maskload_ps(src + i * lds, present) : _mm256_setzero_ps();
        // Within each 128-bit lane: pairs, then 4 x 4 blocks; finally the lanes themselves.
        __m256 t[8];
        PARDL_UNROLL_ALL
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        __m256 u[8]; // u[4g + c], lane l: column 4l + c of rows 4g .. 4g + 3
        PARDL_UNROLL_ALL
        for (int g = 0; g < 2; ++g) {
            const __m256 lo0 = t[4 * g], hi0 = t[4 * g + 1], lo1 = t[4 * g + 2], hi1 = t[4 * g + 3];
            u[4 * g + 0] = _mm256_shuffle_ps(lo0, lo1, 0x44);
            u[4 * g + 1] = _mm256_shuffle_ps(lo0, lo1, 0xEE);
            u[4 * g + 2] = _mm256_shuffle_ps(hi0, hi1, 0x44);
            u[4 * g + 3] = _mm256_shuffle_ps(hi0, hi1, 0xEE);
        }
        const auto store_column = [&](size_t q, __m256 v) {
            if (q < cols) simd::store_first_avx2(dst + q * ldd, count, _mm256_castps_si256(v));
        };
        PARDL_UNROLL_ALL
        for (int c = 0; c < 4; ++c) {
            store_column(c, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
            store_column(c + 4, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
        }
    }
};
#include "pardl/tensor/gemm_kernels.ipp"
PARDL_SIMD_TARGET_END
} // namespace avx2

namespace avx512 {
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX512)
struct Vec {
    using V = __m512;
    static constexpr int width = 16;
    // 32 zmm: 28 accumulators + 2 B vectors + 1 broadcast. Fourteen rows rather than twelve: each
    // B vector a k step loads (from L2 when B is read in place) feeds 14 multiply-adds instead of
    // 12, and the products of W-CNN and of W-MLP's Serial step ran 1-4% faster on an Intel Xeon
    // (bench_gemm, bench_conv), the same bits. Fifteen leaves no register: one accumulator then
    // goes through the stack on every k step.
    static constexpr int mr_max = 14, nv_max = 2;
    static constexpr int dot_rows = 3, dot_cols = 4; // conv1's 9 x 32 weight gradient in whole tiles
    /// Makes the compiler hold v in a register (KernelSet::load_once).
    static void in_register(V& v) noexcept { asm("" : "+v"(v)); }
    static V load(const float* p) noexcept { return _mm512_loadu_ps(p); }
    static V load_first(const float* p, size_t count) noexcept {
        return _mm512_maskz_loadu_ps(simd::first_lanes(count), p);
    }
    static void store(float* p, V v) noexcept { _mm512_storeu_ps(p, v); }
    static V set1(float x) noexcept { return _mm512_set1_ps(x); }
    static V add(V a, V b) noexcept { return _mm512_add_ps(a, b); }
    static V fma(V a, V b, V c) noexcept { return _mm512_fmadd_ps(a, b, c); }
    /// Zero where a <= 0 (false for NaN, which stays): exactly ReLU's a <= 0 ? +0 : a.
    static V relu(V a) noexcept {
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NLE_UQ), a);
    }

    /// out[t] = sum16_by_halving(lanes + 16 t) for t < count (<= 16): each level of the halving
    /// adds the halves of two accumulators in one instruction, 15 adds for 16 sums.
    static void sum16(const float* lanes, int count, float* out) noexcept {
        constexpr __mmask16 all = 0xFFFF; // see transpose below on GCC 12's unmasked forms
        __m512 x[16];
        for (int i = 0; i < 16; ++i) x[i] = i < count ? _mm512_load_ps(lanes + 16 * i) : _mm512_setzero_ps();
        __m512 y[8]; // 128-bit quarters 0-1: accumulator 2i's l + (l + 8); 2-3: accumulator 2i + 1's
        for (int i = 0; i < 8; ++i)
            y[i] = _mm512_add_ps(_mm512_mask_shuffle_f32x4(x[2 * i], all, x[2 * i], x[2 * i + 1], 0x44),
                                 _mm512_mask_shuffle_f32x4(x[2 * i], all, x[2 * i], x[2 * i + 1], 0xEE));
        __m512 z[4]; // quarter r: accumulator 4j + r's l + (l + 4)
        for (int j = 0; j < 4; ++j)
            z[j] = _mm512_add_ps(_mm512_mask_shuffle_f32x4(y[2 * j], all, y[2 * j], y[2 * j + 1], 0x88),
                                 _mm512_mask_shuffle_f32x4(y[2 * j], all, y[2 * j], y[2 * j + 1], 0xDD));
        __m512 w[2]; // quarter q: the l + (l + 2) pairs of accumulators 8h + q and 8h + 4 + q
        for (int h = 0; h < 2; ++h)
            w[h] = _mm512_add_ps(_mm512_mask_shuffle_ps(z[2 * h], all, z[2 * h], z[2 * h + 1], 0x44),
                                 _mm512_mask_shuffle_ps(z[2 * h], all, z[2 * h], z[2 * h + 1], 0xEE));
        // Element 4q + t holds the sum of accumulator 4t + q: put it at 4t + q.
        const __m512 v = _mm512_add_ps(_mm512_mask_shuffle_ps(w[0], all, w[0], w[1], 0x88),
                                       _mm512_mask_shuffle_ps(w[0], all, w[0], w[1], 0xDD));
        const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_mask_storeu_ps(out, simd::first_lanes(static_cast<size_t>(count)),
                              _mm512_mask_permutexvar_ps(v, all, order, v));
    }

    static constexpr size_t transpose_block = 16;
    /// Transposes a rows x cols block (rows, cols <= 16; missing rows read as zero) into cols
    /// columns, storing the first `count` elements of column q at dst + q * ldd. Reads nothing
    /// past a row's cols floats and writes no column past cols.
    static void transpose(const float* src, size_t lds, size_t rows, size_t cols, float* dst, size_t ldd,
                          size_t count) noexcept {
        // The all-lanes masked forms: GCC 12's unmasked ones start from _mm512_undefined_ps(),
        // which trips -Wuninitialized in every translation unit that includes this header.
        constexpr __mmask16 all = 0xFFFF;
        const __mmask16 present = simd::first_lanes(cols);
        __m512 r[16];
        PARDL_UNROLL_ALL
        for (size_t i = 0; i < 16; ++i)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(present, src + i * lds) : _mm512_setzero_ps();
        // Within each 128-bit lane: pairs, then 4 x 4 blocks; finally the lanes themselves.
        __m512 t[16];
        PARDL_UNROLL_ALL
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_mask_unpacklo_ps(r[i], all, r[i], r[i + 1]);
            t[i + 1] = _mm512_mask_unpackhi_ps(r[i], all, r[i], r[i + 1]);
        }
        __m512 u[16]; // u[4g + c], lane l: column 4l + c of rows 4g .. 4g + 3
        PARDL_UNROLL_ALL
        for (int g = 0; g < 4; ++g) {
            const __m512 lo0 = t[4 * g], hi0 = t[4 * g + 1], lo1 = t[4 * g + 2], hi1 = t[4 * g + 3];
            u[4 * g + 0] = _mm512_mask_shuffle_ps(lo0, all, lo0, lo1, 0x44);
            u[4 * g + 1] = _mm512_mask_shuffle_ps(lo0, all, lo0, lo1, 0xEE);
            u[4 * g + 2] = _mm512_mask_shuffle_ps(hi0, all, hi0, hi1, 0x44);
            u[4 * g + 3] = _mm512_mask_shuffle_ps(hi0, all, hi0, hi1, 0xEE);
        }
        const __mmask16 mask = simd::first_lanes(count);
        PARDL_UNROLL_ALL
        for (int c = 0; c < 4; ++c) {
            const __m512 a0 = u[c], a1 = u[4 + c], a2 = u[8 + c], a3 = u[12 + c];
            const __m512 v0 = _mm512_mask_shuffle_f32x4(a0, all, a0, a1, 0x44);
            const __m512 v1 = _mm512_mask_shuffle_f32x4(a0, all, a0, a1, 0xEE);
            const __m512 v2 = _mm512_mask_shuffle_f32x4(a2, all, a2, a3, 0x44);
            const __m512 v3 = _mm512_mask_shuffle_f32x4(a2, all, a2, a3, 0xEE);
            const auto store_column = [&](size_t q, __m512 v) {
                if (q < cols) _mm512_mask_storeu_ps(dst + q * ldd, mask, v);
            };
            store_column(c + 0, _mm512_mask_shuffle_f32x4(v0, all, v0, v2, 0x88));
            store_column(c + 4, _mm512_mask_shuffle_f32x4(v0, all, v0, v2, 0xDD));
            store_column(c + 8, _mm512_mask_shuffle_f32x4(v1, all, v1, v3, 0x88));
            store_column(c + 12, _mm512_mask_shuffle_f32x4(v1, all, v1, v3, 0xDD));
        }
    }
};
#include "pardl/tensor/gemm_kernels.ipp"
PARDL_SIMD_TARGET_END
} // namespace avx512
#endif

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

/// Per-thread packing space. It only grows, so steady-state calls never touch the heap, and each
/// thread owns its own, so concurrent calls from executor workers never share it.
struct Workspace {
    AlignedBuffer<float> a; // one A sliver: kc x mr
    AlignedBuffer<float> b; // one B panel: kc x nc, as nr_max-wide slivers
    AlignedBuffer<float> c; // C transposed, for a narrow product (run_transposed)

    static Workspace& local() {
        thread_local Workspace ws;
        return ws;
    }
    static float* reserve(AlignedBuffer<float>& buf, size_t n) {
        if (buf.size() < n) buf.resize(n);
        return buf.data();
    }
};

/// Whether rows `ld` floats apart are crowded: a multiple of 2 KiB apart, a sliver's rows then
/// share a few L1 sets and evict one another, and run() packs them rather than read them in place.
constexpr bool crowded(size_t ld) noexcept {
    return ld % 512 == 0;
}

/// Splits `total` into `parts` contiguous pieces whose sizes differ by at most one.
constexpr size_t piece_begin(size_t total, size_t parts, size_t i) noexcept {
    return total / parts * i + std::min(i, total % parts);
}

/// Whether C = A B^T goes through the dot-product kernel (KernelSet::dot_kernel) rather than the
/// micro-kernels. Those pack both operands transposed: B once per block, so its cost is spread over
/// m rows of C, and A once per row sliver. The dot products read both in place and pay instead one
/// sum of 16 lanes per element of C, spread over k. Hence a long k and few rows: W-CNN's first
/// convolution's weight gradient (m = 9, k = 784). It depends on m, k and nothing else, so a
/// product takes one path whatever the instruction set.
constexpr bool dot_pays(size_t m, size_t k) noexcept {
    return k >= 512 && m <= 64;
}

/// C = A B^T + beta C through dot-product tiles (arguments as gemm()'s).
template <class Kernels>
void run_dot(size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b, size_t ldb, float beta,
             float* c, size_t ldc) {
    constexpr size_t R = Kernels::dot_rows, C = Kernels::dot_cols;
    // Every row tile of A sweeps a block of B's rows, sized to stay in the L2 (256 KiB of B,
    // 256 rows of Dense<256>'s weights), while the row tile stays in the L1: B leaves memory once.
    const size_t block = std::max(C, 65536 / k / C * C);
    for (size_t jb = 0; jb < n; jb += block) {
        const size_t je = std::min(n, jb + block);
        for (size_t i = 0; i < m; i += R)
            for (size_t j = jb; j < je; j += C)
                Kernels::dot_kernel(k, a + i * lda, lda, std::min(R, m - i), b + j * ldb, ldb,
                                    std::min(C, je - j), c + i * ldc + j, ldc, beta);
    }
}

/// The share of the vector lanes that hold elements when `count` elements are cut into vectors of
/// `lanes`: 10 of 16 for Dense<10>'s outputs.
constexpr double lane_fill(size_t count, size_t lanes) noexcept {
    return double(count) / double((count + lanes - 1) / lanes * lanes);
}

/// Whether C (m x n) is computed faster as C^T = op(B)^T op(A)^T (run_transposed): C narrower
/// than the micro-kernel's widest tile, whose rows would fill fewer of the vector lanes than its
/// columns. W-MLP's Dense<10>: its forward product (64 x 10, k = 128) then uses every lane, and
/// its weight gradient (128 x 10) reads both operands in place, where its rows had to be packed.
/// Narrower than one vector was the first rule. The tile's width also takes AVX2's Dense<10>
/// (8-float vectors, a 16-wide tile), whose forward product went from 6.4 to 2.5 us.
template <class Kernels>
constexpr bool transposed_pays(size_t m, size_t n) noexcept {
    constexpr size_t lanes = Kernels::lanes;
    return n < Kernels::nr_max && lane_fill(m, lanes) > lane_fill(n, lanes);
}

template <class Kernels>
void run_blocked(Op op_a, Op op_b, size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                 size_t ldb, float beta, float* c, size_t ldc, const Epilogue& ep);

/// C = op(A) op(B) + beta C computed as its transpose C^T = op(B)^T op(A)^T + beta C^T in a
/// per-thread buffer, with C transposed into it first (unless beta == 0) and the result transposed
/// back. Every element of C gets the arithmetic of run_blocked on the product as given (the same
/// k blocks, each a chain of fused multiply-adds in order, then beta), so the bits do not change.
template <class Kernels>
void run_transposed(Op op_a, Op op_b, size_t m, size_t n, size_t k, const float* a, size_t lda,
                    const float* b, size_t ldb, float beta, float* c, size_t ldc) {
    const auto flip = [](Op op) noexcept { return op == Op::N ? Op::T : Op::N; };
    float* const ct = Workspace::reserve(Workspace::local().c, n * m); // n rows of m
    if (beta != 0.0f) Kernels::pack_transposed(c, ldc, m, m, n, ct, m);
    run_blocked<Kernels>(flip(op_b), flip(op_a), n, m, k, b, ldb, a, lda, beta, ct, m, {});
    Kernels::pack_transposed(ct, m, n, n, m, c, ldc);
}

/// The product with one instruction set's Kernels (see gemm()): the special cases, then the
/// dot-product kernels, the transposed product or the blocked one.
template <class Kernels>
void run(Op op_a, Op op_b, size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
         size_t ldb, float beta, float* c, size_t ldc, const Epilogue& ep) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale(m, n, beta, c, ldc);
        if (ep.row_bias != nullptr || ep.relu)
            for (size_t i = 0; i < m; ++i)
                for (size_t j = 0; j < n; ++j) {
                    float& v = c[i * ldc + j];
                    if (ep.row_bias != nullptr) v += ep.row_bias[i];
                    if (ep.relu) v = ScalarVec::relu(v);
                }
        return;
    }
    const bool plain = ep.row_bias == nullptr && !ep.relu;
    if (op_a == Op::N && op_b == Op::T && plain && dot_pays(m, k))
        return run_dot<Kernels>(m, n, k, a, lda, b, ldb, beta, c, ldc);
    if (plain && transposed_pays<Kernels>(m, n))
        return run_transposed<Kernels>(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
    run_blocked<Kernels>(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc, ep);
}

/// The blocked product through the micro-kernels (m, n, k > 0).
template <class Kernels>
void run_blocked(Op op_a, Op op_b, size_t m, size_t n, size_t k, const float* a, size_t lda, const float* b,
                 size_t ldb, float beta, float* c, size_t ldc, const Epilogue& ep) {
    constexpr size_t mr_max = Kernels::mr_max, nv_max = Kernels::nv_max, lanes = Kernels::lanes;
    constexpr size_t nr_max = Kernels::nr_max;
    // The micro-kernel for an mr x nv tile: a table entry, called directly in the loops below.
    const auto kernel_for = [](size_t mr, size_t nv) noexcept {
        assert(mr >= 1 && mr <= mr_max && nv >= 1 && nv <= nv_max);
        return Kernels::table[(mr - 1) * nv_max + (nv - 1)];
    };
    // Balanced splits: a 784-deep product becomes 4 x 196 rather than 3 x 256 + 16, and 64 rows
    // become slivers of 13 and 12 rather than 14 x 4 + 8.
    const size_t k_parts = (k + kc_max - 1) / kc_max;
    const size_t m_parts = (m + mr_max - 1) / mr_max;
    const size_t kc_cap = (k + k_parts - 1) / k_parts;
    const size_t nc_cap = std::min(nc_max, (n + nr_max - 1) / nr_max * nr_max);

    Workspace& ws = Workspace::local();
    float* const a_buf = Workspace::reserve(ws.a, kc_cap * mr_max);
    // Row-major B already holds each sliver's k rows contiguously: read it in place and pack only
    // ragged right-edge slivers (into the panel buffer's first sliver slot). Transposed A likewise
    // holds each sliver's mr elements contiguously for every k. Except where rows lie a multiple
    // of 2 KiB apart (512 floats: square powers of two): a sliver's rows then share a few L1 sets
    // and evict one another, and packing pays (on an Intel Xeon, 512^3 TN went from about 61 to
    // 71-76% of peak, TT from 63 to 69-72%). On AVX2 it also packs rows a multiple of 1 KiB apart
    // that many A slivers share (Kernels::packs_readable_b). The arithmetic is the same either way.
    const bool direct_b = op_b == Op::N && !crowded(ldb) && !Kernels::packs_readable_b(m, ldb);
    float* const b_buf = Workspace::reserve(ws.b, kc_cap * (direct_b ? nr_max : nc_cap));
    const bool direct_a = op_a == Op::T && !crowded(lda);
    // Element (i, j) of op(X), for X stored row-major with row stride ld: where a block starts.
    const auto at = [](Op op, const float* x, size_t ld, size_t i, size_t j) noexcept {
        return op == Op::N ? x + i * ld + j : x + j * ld + i;
    };

    for (size_t jc = 0; jc < n; jc += nc_max) {
        const size_t nc = std::min(nc_max, n - jc);
        for (size_t kp = 0; kp < k_parts; ++kp) {
            const size_t pc = piece_begin(k, k_parts, kp);
            const size_t kc = piece_begin(k, k_parts, kp + 1) - pc;
            // Later k blocks add onto what the first one wrote; the bias joins the first, ReLU
            // applies to the last.
            const float beta_k = kp == 0 ? beta : 1.0f;
            const float* const bias_k = kp == 0 ? ep.row_bias : nullptr;
            const bool relu_k = ep.relu && kp + 1 == k_parts;

            const float* b_panel = at(op_b, b, ldb, pc, jc);
            size_t b_step = ldb;
            if (!direct_b) {
                Kernels::pack_b(op_b, kc, nc, b_panel, ldb, b_buf);
                b_panel = b_buf;
                b_step = nr_max;
            }
            const size_t nr_edge = nc % nr_max;
            const size_t nc_full = nc - nr_edge;
            // With A read in place, a ragged edge may go down C's rows instead (edge_kernel).
            const bool edge_down_rows = direct_a && nr_edge != 0 && Kernels::edge_down_rows_pays(m, nr_edge);
            // Otherwise a ragged direct-B sliver is packed once per (jc, kc) block, not per A sliver.
            if (direct_b && nr_edge != 0 && !edge_down_rows)
                Kernels::pack_b(Op::N, kc, nr_edge, b_panel + nc_full, ldb, b_buf);

            for (size_t ip = 0; ip < m_parts; ++ip) {
                const size_t ic = piece_begin(m, m_parts, ip);
                const size_t mr = piece_begin(m, m_parts, ip + 1) - ic;
                const float* a_sliver = at(op_a, a, lda, ic, pc);
                size_t a_step = lda;
                if (!direct_a) {
                    Kernels::pack_a(op_a, mr, kc, a_sliver, lda, a_buf);
                    a_sliver = a_buf;
                    a_step = mr;
                }
                float* c_rows = c + ic * ldc + jc;
                const float* const bias_rows = bias_k != nullptr ? bias_k + ic : nullptr;
                const KernelFn full = kernel_for(mr, nv_max);
                for (size_t jr = 0; jr < nc_full; jr += nr_max) {
                    const float* b_sliver = direct_b ? b_panel + jr : b_panel + jr * kc;
                    full(kc, a_sliver, a_step, b_sliver, b_step, c_rows + jr, ldc, nr_max, beta_k, bias_rows,
                         relu_k);
                }
                if (nr_edge != 0 && !edge_down_rows) {
                    const size_t nv = (nr_edge + lanes - 1) / lanes;
                    const float* b_sliver = direct_b ? b_buf : b_panel + nc_full * kc;
                    kernel_for(mr, nv)(kc, a_sliver, a_step, b_sliver, nr_max, c_rows + nc_full, ldc, nr_edge,
                                       beta_k, bias_rows, relu_k);
                }
            }
            if (edge_down_rows) {
                const float* b_edge = direct_b ? b_panel + nc_full : b_panel + nc_full * kc;
                Kernels::edge_columns_down_rows(kc, a + pc * lda, lda, m, b_edge, b_step, c + jc + nc_full,
                                                ldc, nr_edge, beta_k, bias_k, relu_k);
            }
        }
    }
}

} // namespace detail::gemm

/// A row stride, in floats, for a matrix of `cols` floats per row that gemm is to read in place:
/// `cols` rounded up to 8 floats, and 8 more where that makes a multiple of 16, so that rows lie an
/// odd multiple of 32 bytes apart. Rows a multiple of a larger power of two apart (256 bytes for 64
/// floats) fall into a fraction of the L1's sets, and the micro-kernel, which reads a few floats of
/// every row per step, then misses: on an Intel Xeon (48 KiB L1) it ran 8% slower on A rows 256
/// bytes apart than 288. (Rows a multiple of 2 KiB apart gemm packs rather than read in place.)
constexpr std::size_t gemm_row_stride(std::size_t cols) noexcept {
    const std::size_t rounded = (cols + 7) / 8 * 8;
    return rounded % 16 == 0 ? rounded + 8 : rounded;
}

/// A row stride, in floats, for a matrix of `cols` floats per row that gemm is to read in place as
/// B (op(B) = B), its rows whole vectors at a time: `cols` rounded up to whole cache lines, so that
/// in a line-aligned buffer every row starts on a line and no vector load spans two. On an Intel
/// Xeon conv2's forward product of W-CNN (64 x 196 x 288, columns 196 floats a row) ran about 4%
/// faster with its rows 208 floats apart. A multiple of 2 KiB gets one line more (gemm would
/// pack such rows rather than read them in place; on AVX2 it packs rows a multiple of 1 KiB apart
/// too when enough rows of C share the copy, KernelSet::packs_readable_b).
constexpr std::size_t gemm_vector_row_stride(std::size_t cols) noexcept {
    const std::size_t rounded = (cols + cache_line_floats - 1) / cache_line_floats * cache_line_floats;
    return detail::gemm::crowded(rounded) ? rounded + cache_line_floats : rounded;
}

/// C(m x n) = op(A)(m x k) * op(B)(k x n) + beta * C on row-major storage; lda, ldb and ldc are
/// the elements between row starts of the matrices as stored (A is k x m when op_a == T).
/// beta == 0 overwrites C without reading it (it may hold NaN); k == 0 gives C = beta * C.
/// `ep` adds a bias per row and applies ReLU on the way out (see Epilogue).
/// Thread-safe: each calling thread packs into its own buffers, which grow on first use only.
/// The micro-kernels are those of simd::active(), chosen here once per call (PARDL_GEMM_SCALAR
/// forces the portable scalar ones).
inline void gemm(Op op_a, Op op_b, std::size_t m, std::size_t n, std::size_t k, const float* a,
                 std::size_t lda, const float* b, std::size_t ldb, float beta, float* c, std::size_t ldc,
                 const Epilogue& ep = {}) {
    namespace g = detail::gemm;
    assert((ep.row_bias == nullptr || beta == 0.0f) && "gemm: a row bias needs beta == 0");
#if defined(PARDL_GEMM_DISPATCH)
    switch (simd::active()) {
    case simd::Isa::avx512:
        return g::run<g::avx512::Kernels>(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc, ep);
    case simd::Isa::avx2:
        return g::run<g::avx2::Kernels>(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc, ep);
    case simd::Isa::generic:
        break;
    }
#endif
    g::run<g::generic::Kernels>(op_a, op_b, m, n, k, a, lda, b, ldb, beta, c, ldc, ep);
}

/// dst (cols x rows) = src (rows x cols) transposed, on row-major storage with row strides lds and
/// ldd; the ranges must not overlap. The GEMM's packing transposition, in blocks of its instruction
/// set's registers (simd::active()). Kept out of its callers (noipa: neither inlined nor cloned
/// for constant shapes): given shapes whose element-by-element tail is dead, GCC 12 warns of
/// undefined behaviour in that tail (-Waggressive-loop-optimizations). Clang has no noipa, and
/// no such warning: noinline there.
#if defined(__clang__)
#define PARDL_NOIPA gnu::noinline
#else
#define PARDL_NOIPA gnu::noipa
#endif
[[PARDL_NOIPA]] inline void transpose(std::size_t rows, std::size_t cols, const float* src, std::size_t lds,
                                      float* dst, std::size_t ldd) {
    namespace g = detail::gemm;
#if defined(PARDL_GEMM_DISPATCH)
    switch (simd::active()) {
    case simd::Isa::avx512:
        return g::avx512::Kernels::pack_transposed(src, lds, rows, rows, cols, dst, ldd);
    case simd::Isa::avx2:
        return g::avx2::Kernels::pack_transposed(src, lds, rows, rows, cols, dst, ldd);
    case simd::Isa::generic:
        break;
    }
#endif
    g::generic::Kernels::pack_transposed(src, lds, rows, rows, cols, dst, ldd);
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
