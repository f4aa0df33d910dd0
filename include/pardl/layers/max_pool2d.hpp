// MaxPool2D<K, S>: max over K x K windows (stride S, no padding) per channel. Forward records the
// winning input of each output in per-worker scratch so backward routes gradients without search.
// Models BoundLayer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

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
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX512)
/// The common 2x2, stride-2 max pooling of C x H x W inputs (OH x OW outputs) with AVX-512:
/// disjoint windows, so 16 outputs of one output row come from 32 consecutive floats of each of
/// two input rows, split into even and odd columns. argmax holds out_size indices per row.
template <std::size_t C, std::size_t H, std::size_t W, std::size_t OH, std::size_t OW>
struct MaxPool2x2Avx512 {
    static constexpr std::size_t in_size = C * H * W, out_size = C * OH * OW;

    /// With Relu, y = ReLU(max): the winner is the window's raw maximum (see MaxPool2D's FuseRelu).
    template <bool Relu>
    static void forward(ConstMatrix x, Matrix y, std::uint32_t* argmax) noexcept {
        const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        const __m512i w = _mm512_set1_epi32(static_cast<int>(W));
        for (std::size_t r = 0; r < x.rows; ++r) {
            const float* xr = x.row(r);
            float* yr = y.row(r);
            std::uint32_t* ar = argmax + r * out_size;
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < OH; ++oh) {
                    const std::size_t top_row = (c * H + 2 * oh) * W;
                    const float* r0 = xr + top_row;
                    const float* r1 = r0 + W;
                    const std::size_t o_row = (c * OH + oh) * OW;
                    for (std::size_t ow = 0; ow < OW; ow += 16) {
                        const std::size_t n = std::min<std::size_t>(16, OW - ow);
                        // Only the 2n inputs the windows cover are read (an odd width's last
                        // column is not).
                        const __mmask16 lo = simd::first_lanes(2 * n),
                                        hi = simd::first_lanes(2 * n > 16 ? 2 * n - 16 : 0);
                        const float* p0 = r0 + 2 * ow;
                        const float* p1 = r1 + 2 * ow;
                        const __m512 a_lo = _mm512_maskz_loadu_ps(lo, p0),
                                     a_hi = _mm512_maskz_loadu_ps(hi, p0 + 16);
                        const __m512 b_lo = _mm512_maskz_loadu_ps(lo, p1),
                                     b_hi = _mm512_maskz_loadu_ps(hi, p1 + 16);
                        // Window order (0,0), (0,1), (1,0), (1,1) with a strict >, as the general
                        // loop: the first maximum wins ties, and NaN never replaces a value.
                        __m512 m = _mm512_permutex2var_ps(a_lo, even, a_hi);
                        __m512i best =
                            _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(top_row + 2 * ow)), even);
                        const __m512i base = best;
                        const auto take = [&](__m512 v, __m512i at) {
                            const __mmask16 gt = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ);
                            m = _mm512_mask_mov_ps(m, gt, v);
                            best = _mm512_mask_mov_epi32(best, gt, at);
                        };
                        take(_mm512_permutex2var_ps(a_lo, odd, a_hi),
                             _mm512_add_epi32(base, _mm512_set1_epi32(1)));
                        take(_mm512_permutex2var_ps(b_lo, even, b_hi), _mm512_add_epi32(base, w));
                        take(_mm512_permutex2var_ps(b_lo, odd, b_hi),
                             _mm512_add_epi32(base, _mm512_add_epi32(w, _mm512_set1_epi32(1))));
                        const __mmask16 out = simd::first_lanes(n);
                        // max returns its second operand for NaN and two zeros: x > 0 ? x : 0.
                        if constexpr (Relu) m = _mm512_mask_max_ps(m, 0xFFFF, m, _mm512_setzero_ps());
                        _mm512_mask_storeu_ps(yr + o_row + ow, out, m);
                        _mm512_mask_storeu_epi32(ar + o_row + ow, out, best);
                    }
                }
        }
    }

    /// With Relu, dy is first multiplied by ReLU's derivative at this layer's output y.
    template <bool Relu>
    static void backward(ConstMatrix y, ConstMatrix dy, Matrix dx, const std::uint32_t* argmax) noexcept {
        // Every covered input is written (its gradient or zero), so only an odd border needs
        // clearing beforehand.
        constexpr bool border = H % 2 != 0 || W % 2 != 0;
        // Interleaving indices: lanes 0..15 of the result take even/odd pairs from e and f.
        const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        const __m512i two_iota = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i one = _mm512_set1_epi32(1), w = _mm512_set1_epi32(static_cast<int>(W));
        const __m512i w1 = _mm512_add_epi32(w, one);
        const __m512 unit = _mm512_set1_ps(1.0f);
        for (std::size_t r = 0; r < dy.rows; ++r) {
            float* d = dx.row(r);
            const float* g = dy.row(r);
            const float* yr = Relu ? y.row(r) : nullptr;
            const std::uint32_t* ar = argmax + r * out_size;
            if constexpr (border) std::fill_n(d, in_size, 0.0f);
            for (std::size_t c = 0; c < C; ++c)
                for (std::size_t oh = 0; oh < OH; ++oh) {
                    const std::size_t top_row = (c * H + 2 * oh) * W;
                    const std::size_t o_row = (c * OH + oh) * OW;
                    for (std::size_t ow = 0; ow < OW; ow += 16) {
                        const std::size_t n = std::min<std::size_t>(16, OW - ow);
                        const __mmask16 out = simd::first_lanes(n);
                        __m512 gv = _mm512_maskz_loadu_ps(out, g + o_row + ow);
                        if constexpr (Relu) { // dy * (y > 0 ? 1 : 0), as the ReLU layer computes it
                            const __m512 yv = _mm512_maskz_loadu_ps(out, yr + o_row + ow);
                            const __mmask16 live = _mm512_cmp_ps_mask(yv, _mm512_setzero_ps(), _CMP_GT_OQ);
                            gv = _mm512_mul_ps(gv, _mm512_maskz_mov_ps(live, unit));
                        }
                        const __m512i rel = _mm512_sub_epi32(
                            _mm512_maskz_loadu_epi32(out, ar + o_row + ow),
                            _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(top_row + 2 * ow)),
                                             two_iota));
                        const __m512 e0 =
                            _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(rel, _mm512_setzero_si512()), gv);
                        const __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(rel, one), gv);
                        const __m512 f0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(rel, w), gv);
                        const __m512 f1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(rel, w1), gv);
                        const __mmask16 lo = simd::first_lanes(2 * n),
                                        hi = simd::first_lanes(2 * n > 16 ? 2 * n - 16 : 0);
                        float* p0 = d + top_row + 2 * ow;
                        float* p1 = p0 + W;
                        _mm512_mask_storeu_ps(p0, lo, _mm512_permutex2var_ps(e0, lo_idx, e1));
                        _mm512_mask_storeu_ps(p0 + 16, hi, _mm512_permutex2var_ps(e0, hi_idx, e1));
                        _mm512_mask_storeu_ps(p1, lo, _mm512_permutex2var_ps(f0, lo_idx, f1));
                        _mm512_mask_storeu_ps(p1 + 16, hi, _mm512_permutex2var_ps(f0, hi_idx, f1));
                    }
                }
        }
    }
};
PARDL_SIMD_TARGET_END
#endif
} // namespace detail

template <std::size_t Kernel, std::size_t Stride = Kernel>
struct MaxPool2D : LayerSpecBase, detail::PoolWindow<Kernel, Stride> {
    static constexpr const char* requirement =
        "MaxPool2D needs a C x H x W (rank-3) input at least Kernel high and wide";

    static std::string name() { return detail::PoolWindow<Kernel, Stride>::label("MaxPool2D"); }

    template <ShapeType In>
    struct bind : ParameterFree, detail::PoolWindow<Kernel, Stride>::template Geometry<In> {
        using Geometry = typename detail::PoolWindow<Kernel, Stride>::template Geometry<In>;
        using Geometry::C, Geometry::H, Geometry::W, Geometry::OH, Geometry::OW;
        using typename Geometry::input_shape, typename Geometry::output_shape;
        static constexpr std::size_t out_size = output_shape::size;
        static_assert(In::size <= UINT32_MAX, "pardl: MaxPool2D stores argmax indices as 32-bit");

        static std::string name() { return MaxPool2D::name(); }

        explicit bind(std::size_t max_rows) : argmax_(max_rows * out_size) {}

        /// Row-wise (row_wise_v): the winners of row r of a call go to row part_first + r.
        static constexpr bool row_wise = true;

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
        std::uint32_t* winners(const StepContext& ctx) { return argmax_.data() + ctx.part_first * out_size; }

        template <bool Relu>
        void run_forward(ConstMatrix x, Matrix y, std::uint32_t* argmax) {
#if defined(PARDL_SIMD_X86)
            if constexpr (fast_2x2)
                if (simd::active() == simd::Isa::avx512) return Fast2x2::template forward<Relu>(x, y, argmax);
#endif
            for (std::size_t r = 0; r < x.rows; ++r) {
                const float* xr = x.row(r);
                float* yr = y.row(r);
                std::uint32_t* ar = argmax + r * out_size;
                for (std::size_t c = 0; c < C; ++c)
                    for (std::size_t oh = 0; oh < OH; ++oh)
                        for (std::size_t ow = 0; ow < OW; ++ow) {
                            // Selects rather than branches (on real data the comparison is a coin
                            // flip). A strict > in row-major window order keeps the first maximum
                            // on ties, as PyTorch does.
                            const std::size_t top = (c * H + oh * Stride) * W + ow * Stride;
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
                            ar[o] = static_cast<std::uint32_t>(best);
                        }
            }
        }

        template <bool Relu>
        void run_backward(ConstMatrix y, ConstMatrix dy, Matrix dx, const std::uint32_t* argmax) {
            if (dx.empty()) return;
#if defined(PARDL_SIMD_X86)
            if constexpr (fast_2x2)
                if (simd::active() == simd::Isa::avx512)
                    return Fast2x2::template backward<Relu>(y, dy, dx, argmax);
#endif
            for (std::size_t r = 0; r < dy.rows; ++r) {
                float* d = dx.row(r);
                const float* g = dy.row(r);
                const float* yr = Relu ? y.row(r) : nullptr;
                const std::uint32_t* ar = argmax + r * out_size;
                std::fill_n(d, In::size, 0.0f);
                // Overlapping windows (Stride < Kernel) may share a winner, hence +=.
                for (std::size_t o = 0; o < out_size; ++o)
                    d[ar[o]] += Relu ? g[o] * detail::ReluFn::derivative_from_output(yr[o]) : g[o];
            }
        }

        /// The common 2x2, stride-2 pooling has a vector path (detail::MaxPool2x2Avx512).
        static constexpr bool fast_2x2 = Kernel == 2 && Stride == 2;
#if defined(PARDL_SIMD_X86)
        using Fast2x2 = detail::MaxPool2x2Avx512<C, H, W, OH, OW>;
#endif

        AlignedBuffer<std::uint32_t> argmax_;
    };
};

} // namespace pardl
