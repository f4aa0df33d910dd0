// MaxPool2D<K, S>: max over K x K windows (stride S, no padding) per channel. Forward records the
// winning input of each output in per-worker scratch so backward routes gradients without search:
// its index in the sample, or for 2 x 2 windows of stride 2 its place in the window, in a byte.
// Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "pardl/layers/layer.hpp"
#include "pardl/layers/pool_window.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/simd.hpp"
#include "pardl/tensor/view.hpp"

#if defined(PARDL_SIMD_X86)
#include <immintrin.h>
#endif

namespace pardl {

namespace detail {
#if defined(PARDL_SIMD_X86)
// The vector path of 2x2, stride-2 pooling (max_pool_2x2.ipp), once per instruction set.
namespace pool_avx512 {
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX512)
struct Lanes {
    using V = __m512;
    using I = __m512i;
    static constexpr std::size_t width = 16;
    // The all-lanes masked forms where GCC 12's unmasked ones start from _mm512_undefined_ps(),
    // which trips -Wuninitialized in every translation unit that includes this header.
    static constexpr __mmask16 all = 0xFFFF;
    static __mmask16 first(std::size_t n) noexcept { return simd::first_lanes(n); }
    static V load(const float* p, std::size_t n) noexcept { return _mm512_maskz_loadu_ps(first(n), p); }
    /// 16 bytes, whatever n: the winners' buffer has `width` bytes to spare after its last row,
    /// and the lanes past n are never stored (a masked byte load needs AVX-512BW).
    static I load_index(const std::uint8_t* p, std::size_t) noexcept {
        return _mm512_maskz_cvtepu8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static void load_pairs(const float* p, std::size_t n, V& even, V& odd) noexcept {
        const I even_at = iota2(), odd_at = _mm512_add_epi32(even_at, _mm512_set1_epi32(1));
        const V lo = _mm512_maskz_loadu_ps(first(2 * n), p);
        const V hi = _mm512_maskz_loadu_ps(first(2 * n > 16 ? 2 * n - 16 : 0), p + 16);
        even = _mm512_permutex2var_ps(lo, even_at, hi);
        odd = _mm512_permutex2var_ps(lo, odd_at, hi);
    }
    static void store(float* p, std::size_t n, V v) noexcept { _mm512_mask_storeu_ps(p, first(n), v); }
    static void store_index(std::uint8_t* p, std::size_t n, I i) noexcept {
        _mm512_mask_cvtepi32_storeu_epi8(p, first(n), i);
    }
    static void store_pairs(float* p, std::size_t n, V even, V odd) noexcept {
        // Lanes 0..15 of each result take alternately from even and odd.
        const I lo_at = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const I hi_at = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        _mm512_mask_storeu_ps(p, first(2 * n), _mm512_permutex2var_ps(even, lo_at, odd));
        _mm512_mask_storeu_ps(p + 16, first(2 * n > 16 ? 2 * n - 16 : 0),
                              _mm512_permutex2var_ps(even, hi_at, odd));
    }
    static __mmask16 greater(V a, V b) noexcept { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
    static __mmask16 equal(I a, I b) noexcept { return _mm512_cmpeq_epi32_mask(a, b); }
    static V select(__mmask16 m, V a, V b) noexcept { return _mm512_mask_mov_ps(b, m, a); }
    static I select_index(__mmask16 m, I a, I b) noexcept { return _mm512_mask_mov_epi32(b, m, a); }
    static V zero_unless(__mmask16 m, V a) noexcept { return _mm512_maskz_mov_ps(m, a); }
    /// Zero where a <= 0 (false for NaN, which stays): exactly ReLU's a <= 0 ? +0 : a.
    static V relu(V a) noexcept {
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NLE_UQ), a);
    }
    static V set1(float x) noexcept { return _mm512_set1_ps(x); }
    static V add(V a, V b) noexcept { return _mm512_add_ps(a, b); }
    static V mul(V a, V b) noexcept { return _mm512_mul_ps(a, b); }
    static I iota2() noexcept {
        return _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    }
    static I set1_index(std::size_t k) noexcept { return _mm512_set1_epi32(static_cast<int>(k)); }
};
#include "pardl/layers/max_pool_2x2.ipp"
PARDL_SIMD_TARGET_END
} // namespace pool_avx512

namespace pool_avx2 {
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX2)
struct Lanes {
    using V = __m256;
    using I = __m256i; // also the lane masks: all bits set where true
    static constexpr std::size_t width = 8;
    static I first(std::size_t n) noexcept { return simd::first_lanes_avx2(n); }
    static V load(const float* p, std::size_t n) noexcept {
        return n >= width ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first(n));
    }
    /// 8 bytes, whatever n: the winners' buffer has `width` bytes to spare after its last row,
    /// and the lanes past n are never stored.
    static I load_index(const std::uint8_t* p, std::size_t) noexcept {
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static void load_pairs(const float* p, std::size_t n, V& even, V& odd) noexcept {
        const V lo = load(p, 2 * n);
        const V hi = load(p + 8, 2 * n > 8 ? 2 * n - 8 : 0);
        // The shuffles pick within 128-bit halves (lo 0 2, hi 0 2 | lo 4 6, hi 4 6); the
        // 64-bit permutation then puts lo's pairs before hi's.
        even = in_order(_mm256_shuffle_ps(lo, hi, 0x88));
        odd = in_order(_mm256_shuffle_ps(lo, hi, 0xDD));
    }
    static void store(float* p, std::size_t n, V v) noexcept {
        simd::store_first_avx2(p, n, _mm256_castps_si256(v));
    }
    static void store_index(std::uint8_t* p, std::size_t n, I i) noexcept {
        // The lanes hold 0..3: packing them to 16 and then 8 bits keeps every value.
        const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
        const auto bytes = static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_packus_epi16(words, words)));
        if (n >= width) {
            std::memcpy(p, &bytes, width);
            return;
        }
        for (std::size_t l = 0; l < n; ++l) p[l] = static_cast<std::uint8_t>(bytes >> (8 * l));
    }
    static void store_pairs(float* p, std::size_t n, V even, V odd) noexcept {
        // Within 128-bit halves: (e0 o0 e1 o1 | e4 o4 e5 o5) and (e2 o2 e3 o3 | e6 o6 e7 o7).
        const V lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
        store(p, 2 * n, _mm256_permute2f128_ps(lo, hi, 0x20));
        if (2 * n > 8) store(p + 8, 2 * n - 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
    static I greater(V a, V b) noexcept { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
    static I equal(I a, I b) noexcept { return _mm256_cmpeq_epi32(a, b); }
    static V select(I m, V a, V b) noexcept { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m)); }
    static I select_index(I m, I a, I b) noexcept { return _mm256_blendv_epi8(b, a, m); }
    static V zero_unless(I m, V a) noexcept { return _mm256_and_ps(_mm256_castsi256_ps(m), a); }
    /// Zero where a <= 0 (false for NaN, which stays): exactly ReLU's a <= 0 ? +0 : a.
    static V relu(V a) noexcept {
        return _mm256_andnot_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LE_OQ), a);
    }
    static V set1(float x) noexcept { return _mm256_set1_ps(x); }
    static V add(V a, V b) noexcept { return _mm256_add_ps(a, b); }
    static V mul(V a, V b) noexcept { return _mm256_mul_ps(a, b); }
    static I iota2() noexcept { return _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14); }
    static I set1_index(std::size_t k) noexcept { return _mm256_set1_epi32(static_cast<int>(k)); }

private:
    static V in_order(V v) noexcept {
        return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xD8));
    }
};
#include "pardl/layers/max_pool_2x2.ipp"
PARDL_SIMD_TARGET_END
} // namespace pool_avx2
#endif
} // namespace detail

template <std::size_t Kernel, std::size_t Stride = Kernel>
struct MaxPool2D : LayerSpecBase, detail::PoolWindow<Kernel, Stride> {
    /// The compile error of an input this layer rejects: Sequential instantiates it then, so that
    /// the compiler prints this sentence (a static_assert takes a literal only).
    template <class In>
    struct reject_input {
        static_assert(detail::PoolWindow<Kernel, Stride>::template accepts<In> ||
                          !detail::PoolWindow<Kernel, Stride>::sizes_valid,
                      "MaxPool2D needs a C x H x W (rank-3) input at least Kernel high and wide");
    };

    static std::string name() { return detail::PoolWindow<Kernel, Stride>::label("MaxPool2D"); }

    template <ShapeType In>
    struct bind : ParameterFree, detail::PoolWindow<Kernel, Stride>::template Geometry<In> {
        using Geometry = typename detail::PoolWindow<Kernel, Stride>::template Geometry<In>;
        using Geometry::C, Geometry::H, Geometry::W, Geometry::OH, Geometry::OW;
        using typename Geometry::input_shape, typename Geometry::output_shape;
        static constexpr std::size_t out_size = output_shape::size;
        static_assert(In::size <= UINT32_MAX, "pardl: MaxPool2D stores argmax indices as 32-bit");

        /// The common 2x2, stride-2 pooling has a vector path per instruction set (max_pool_2x2.ipp).
        static constexpr bool fast_2x2 = Kernel == 2 && Stride == 2;
        /// What records a window's winner. For 2 x 2 windows its place in the window, 0..3 in
        /// row-major order, on every path whichever the CPU runs: a quarter of the bytes of an
        /// index, and the forward writes the winners of the whole batch, which the backward reads
        /// back from beyond the L2 (W-CNN's first pooling: 1.6 MB a batch of 64 as indices; with
        /// bytes its forward took 313-317 instead of 383-386 us per batch on an Intel Xeon).
        /// Otherwise the winner's index in the sample.
        using Winner = std::conditional_t<fast_2x2, std::uint8_t, std::uint32_t>;

        static std::string name() { return MaxPool2D::name(); }

        /// The vector paths load a whole vector of winners at the end of a row (bytes past it are
        /// never used): `spare` more after the last row keeps those loads inside the buffer.
        explicit bind(std::size_t max_rows) : argmax_(max_rows * out_size + spare) {}

        /// Row-wise (row_wise_v): the winners of row r of a call go to row part_first + r.
        static constexpr bool row_wise = true;
        /// The backward routes dy through the recorded winners: it reads neither x nor (but for
        /// the fused ReLU's mask) y. So a convolution's output that only this layer reads need
        /// not outlive the forward (Sequential::block_local).
        static constexpr bool backward_reads_input = false, backward_reads_output = false;

        /// Max pooling commutes with ReLU (pool(ReLU(x)) == ReLU(pool(x)): ReLU never reorders
        /// values), so Sequential runs a ReLU just before this layer inside its FuseRelu passes,
        /// on the pooled output, a quarter of the size for 2x2 windows. The layer before then
        /// neither writes activated values nor masks its own gradient by them.
        static constexpr bool fuses_relu = true;
        static constexpr bool commutes_with_relu = true;

        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext& ctx) {
            run_forward<false>(x, y, winners(ctx));
        }
        /// y = ReLU(max over each window). The recorded winner is the window's raw maximum; where
        /// that is not positive the gradient is zero anyway.
        void forward(const LayerSlots&, ConstMatrix x, Matrix y, const StepContext& ctx, FuseRelu) {
            run_forward<true>(x, y, winners(ctx));
        }

        void backward(const LayerSlots&, ConstMatrix, ConstMatrix y, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx) {
            run_backward<false>(y, dy, dx, winners(ctx));
        }
        void backward(const LayerSlots&, ConstMatrix, ConstMatrix y, ConstMatrix dy, Matrix dx,
                      const StepContext& ctx, FuseRelu) {
            run_backward<true>(y, dy, dx, winners(ctx));
        }

    private:
        /// The winners of the call's first row.
        Winner* winners(const StepContext& ctx) { return argmax_.data() + ctx.part_first * out_size; }

        /// The index in the sample of the first input of output (c, oh, ow)'s window.
        static constexpr std::size_t window_top(std::size_t c, std::size_t oh, std::size_t ow) noexcept {
            return (c * H + oh * Stride) * W + ow * Stride;
        }
        /// The winner as recorded, for the window whose first input is `top` (see Winner).
        static Winner record(std::size_t best, std::size_t top) noexcept {
            if constexpr (fast_2x2)
                return static_cast<Winner>((best - top) / W * 2 + (best - top) % W);
            else
                return static_cast<Winner>(best);
        }
        /// The winner's index in the sample, for output o (see Winner).
        static std::size_t winner_index(Winner recorded, std::size_t o) noexcept {
            if constexpr (fast_2x2) {
                return window_top(o / (OH * OW), o / OW % OH, o % OW) + recorded / 2 * W + recorded % 2;
            } else {
                return recorded;
            }
        }

        template <bool Relu>
        void run_forward(ConstMatrix x, Matrix y, Winner* argmax) {
#if defined(PARDL_SIMD_X86)
            if constexpr (fast_2x2) {
                const simd::Isa isa = simd::active();
                if (isa == simd::Isa::avx512) return Avx512::template forward<Relu>(x, y, argmax);
                if (isa == simd::Isa::avx2) return Avx2::template forward<Relu>(x, y, argmax);
            }
#endif
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* xr = x.row(r);
                float* yr = y.row(r);
                Winner* ar = argmax + r * out_size;
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t oh = 0; oh < OH; ++oh)
                        for (std::size_t ow = 0; ow < OW; ++ow) {
                            // Selects rather than branches (on real data the comparison is a coin
                            // flip). A strict > in row-major window order keeps the first maximum
                            // on ties, as PyTorch does.
                            const std::size_t top = window_top(c, oh, ow);
                            float m = xr[top];
                            std::size_t best = top;
                            for (std::size_t kh = 0; kh < Kernel; ++kh)
                                for (std::size_t kw = 0; kw < Kernel; ++kw) {
                                    const std::size_t at = top + kh * W + kw;
                                    const float v = xr[at];
                                    // GCC turns a ?: pair back into a branch; masks it keeps.
                                    const std::size_t take = std::size_t{0} - static_cast<std::size_t>(v > m);
                                    best ^= (best ^ at) & take;
                                    m = std::max(m, v);
                                }
                            const std::size_t o = (c * OH + oh) * OW + ow;
                            yr[o] = Relu ? detail::ReluFn::value(m) : m;
                            ar[o] = record(best, top);
                        }
            }
        }

        template <bool Relu>
        void run_backward(ConstMatrix y, ConstMatrix dy, Matrix dx, const Winner* argmax) {
            if (dx.empty()) return;
#if defined(PARDL_SIMD_X86)
            if constexpr (fast_2x2) {
                const simd::Isa isa = simd::active();
                if (isa == simd::Isa::avx512) return Avx512::template backward<Relu>(y, dy, dx, argmax);
                if (isa == simd::Isa::avx2) return Avx2::template backward<Relu>(y, dy, dx, argmax);
            }
#endif
            for (std::size_t r = 0; r < dy.rows; ++r) {
                float* d = dx.row(r);
                const float* g = dy.row(r);
                const float* yr = Relu ? y.row(r) : nullptr;
                const Winner* ar = argmax + r * out_size;
                std::fill_n(d, In::size, 0.0f);
                // Overlapping windows (Stride < Kernel) may share a winner, hence +=.
                for (std::size_t o = 0; o < out_size; ++o)
                    d[winner_index(ar[o], o)] +=
                        Relu ? g[o] * detail::ReluFn::derivative_from_output(yr[o]) : g[o];
            }
        }

        static constexpr std::size_t spare = fast_2x2 ? 16 : 0;
#if defined(PARDL_SIMD_X86)
        using Avx512 = detail::pool_avx512::MaxPool2x2<C, H, W, OH, OW>;
        using Avx2 = detail::pool_avx2::MaxPool2x2<C, H, W, OH, OW>;
#endif

        AlignedBuffer<Winner> argmax_;
    };
};

} // namespace pardl
