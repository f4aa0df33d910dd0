// im2col / col2im for one C x H x W sample: unrolls every K x K (strided, zero-padded) window into
// a column so that convolution becomes one GEMM, and scatters column gradients back (adding).
// Row (c, kh, kw) of the column matrix holds, for every output pixel, the input it sees there.
#pragma once

#include <algorithm>
#include <cstddef>

namespace pardl {

/// The geometry of a square-kernel 2-D convolution (or pooling) window over one sample.
struct ConvGeometry {
    std::size_t channels = 1;
    std::size_t height = 1;
    std::size_t width = 1;
    std::size_t kernel = 1;
    std::size_t stride = 1;
    std::size_t padding = 0;

    /// Whether the padded input holds at least one window.
    constexpr bool valid() const noexcept {
        return kernel > 0 && stride > 0 && height + 2 * padding >= kernel && width + 2 * padding >= kernel;
    }
    constexpr std::size_t out_height() const noexcept { return (height + 2 * padding - kernel) / stride + 1; }
    constexpr std::size_t out_width() const noexcept { return (width + 2 * padding - kernel) / stride + 1; }
    /// Rows of the column matrix: C * K * K.
    constexpr std::size_t patch_size() const noexcept { return channels * kernel * kernel; }
    /// Columns of the column matrix: OH * OW.
    constexpr std::size_t out_pixels() const noexcept { return out_height() * out_width(); }
};

namespace detail {

/// For kernel column kw: the output columns [lo, hi) whose input column lies inside the image;
/// the others read padding. Computed once per kernel column so the inner loops have no tests.
struct ValidSpan {
    std::size_t lo, hi;
};
constexpr ValidSpan valid_span(std::size_t k_off, std::size_t in_extent, std::size_t out_extent,
                               std::size_t stride, std::size_t padding) noexcept {
    // input index = o * stride + k_off - padding must lie in [0, in_extent)
    std::size_t lo = padding > k_off ? (padding - k_off + stride - 1) / stride : 0;
    std::size_t hi = in_extent + padding > k_off ? (in_extent + padding - k_off - 1) / stride + 1 : 0;
    lo = std::min(lo, out_extent);
    hi = std::clamp(hi, lo, out_extent);
    return {lo, hi};
}

/// Walks the column matrix row by row, calling fn(col_row, x_row, valid span) for each output row
/// that reads image row x_row (x_row is null where it reads padding). Shared by im2col and col2im
/// so both agree on the layout by construction.
template <class Fn>
inline void for_each_col_row(const ConvGeometry& g, Fn&& fn) {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t kh = 0; kh < k; ++kh) {
            const ValidSpan rows = valid_span(kh, g.height, oh, g.stride, g.padding);
            for (std::size_t kw = 0; kw < k; ++kw) {
                const ValidSpan cols = valid_span(kw, g.width, ow, g.stride, g.padding);
                const std::size_t col_row = ((c * k + kh) * k + kw) * oh;
                for (std::size_t y = 0; y < oh; ++y) {
                    const bool inside = y >= rows.lo && y < rows.hi;
                    // Offset of input (row, column 0 of the valid span) from the channel start.
                    const std::size_t in_row = inside ? y * g.stride + kh - g.padding : 0;
                    fn((col_row + y) * ow, inside, c * g.height * g.width + in_row * g.width, kw, cols);
                }
            }
        }
}

} // namespace detail

/// col (patch_size x out_pixels, row-major) = the windows of sample x (C x H x W), zero padded.
inline void im2col(const ConvGeometry& g, const float* x, float* col) noexcept {
    const std::size_t ow = g.out_width(), s = g.stride;
    detail::for_each_col_row(
        g, [&](std::size_t out, bool inside, std::size_t in, std::size_t kw, detail::ValidSpan span) {
            float* dst = col + out;
            if (!inside || span.lo == span.hi) {
                std::fill_n(dst, ow, 0.0f);
                return;
            }
            std::fill_n(dst, span.lo, 0.0f);
            // Input column of output column o is o * s + kw - padding (non-negative for o >= lo).
            const float* src = x + in + span.lo * s + kw - g.padding;
            if (s == 1)
                std::copy_n(src, span.hi - span.lo, dst + span.lo);
            else
                for (std::size_t o = span.lo; o < span.hi; ++o) dst[o] = src[(o - span.lo) * s];
            std::fill(dst + span.hi, dst + ow, 0.0f);
        });
}

/// dx (C x H x W) += the column gradients scattered back to the inputs they were read from;
/// entries that read padding are dropped. dx must be initialised by the caller.
inline void col2im(const ConvGeometry& g, const float* col, float* dx) noexcept {
    const std::size_t s = g.stride;
    detail::for_each_col_row(
        g, [&](std::size_t out, bool inside, std::size_t in, std::size_t kw, detail::ValidSpan span) {
            if (!inside || span.lo == span.hi) return;
            const float* src = col + out;
            float* dst = dx + in + span.lo * s + kw - g.padding;
            for (std::size_t o = span.lo; o < span.hi; ++o) dst[(o - span.lo) * s] += src[o];
        });
}

} // namespace pardl
