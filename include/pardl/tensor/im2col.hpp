// im2col / col2im for one C x H x W sample: unrolls every K x K (strided, zero-padded) window into
// a column so that convolution becomes one GEMM, and scatters column gradients back (adding).
// Row (c, kh, kw) of the column matrix holds, for every output pixel, the input it sees there.
// im2row / row2im are the same for a sample stored channels-last (H x W x C): one row per output
// pixel, its window in (kh, kw, c) order, so that each of the window's K rows is K * C consecutive
// floats of the image (Conv2D's backward; see there).
#pragma once

#include "pardl/tensor/simd.hpp"

#include <algorithm>
#include <cstddef>

#if defined(PARDL_SIMD_X86)
#include <immintrin.h>
#endif

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

/// Operations on rows of floats, for the portable path.
struct PortableRows {
    /// dst[0, n) = src[0, n); the ranges do not overlap.
    static void copy(const float* __restrict src, std::size_t n, float* __restrict dst) noexcept {
        std::copy_n(src, n, dst);
    }
    /// dst[0, n) += src[0, n); the ranges do not overlap.
    static void add(const float* __restrict src, std::size_t n, float* __restrict dst) noexcept {
        for (std::size_t i = 0; i < n; ++i) dst[i] += src[i];
    }
    /// dst[0, n) = 0.
    static void zero(float* dst, std::size_t n) noexcept { std::fill_n(dst, n, 0.0f); }
    /// dst[j] = ((dst[j] + src[j]) + src[step + j]) + ... for `count` rows src + t * step, in that
    /// order (the bits of `count` calls of add), for j in [0, n).
    static void add_sequence(const float* src, std::ptrdiff_t step, std::size_t count, std::size_t n,
                             float* __restrict dst) noexcept {
        for (std::size_t j = 0; j < n; ++j) {
            float v = dst[j];
            for (std::size_t t = 0; t < count; ++t)
                v += src[static_cast<std::ptrdiff_t>(t) * step + static_cast<std::ptrdiff_t>(j)];
            dst[j] = v;
        }
    }
};

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

/// Walks the column matrix (row stride ld) row by row, calling fn(col_row, x_row, valid span) for
/// each output row that reads image row x_row (x_row is null where it reads padding). Shared by
/// im2col and col2im so both agree on the layout by construction.
template <class Fn>
inline void for_each_col_row(const ConvGeometry& g, std::size_t ld, Fn&& fn) {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel;
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t kh = 0; kh < k; ++kh) {
            const ValidSpan rows = valid_span(kh, g.height, oh, g.stride, g.padding);
            for (std::size_t kw = 0; kw < k; ++kw) {
                const ValidSpan cols = valid_span(kw, g.width, ow, g.stride, g.padding);
                const std::size_t plane = ((c * k + kh) * k + kw) * ld;
                for (std::size_t y = 0; y < oh; ++y) {
                    const bool inside = y >= rows.lo && y < rows.hi;
                    // Offset of input (row, column 0 of the valid span) from the channel start.
                    const std::size_t in_row = inside ? y * g.stride + kh - g.padding : 0;
                    fn(plane + y * ow, inside, c * g.height * g.width + in_row * g.width, kw, cols);
                }
            }
        }
}

#if defined(PARDL_SIMD_X86)
PARDL_SIMD_TARGET_BEGIN(PARDL_SIMD_TARGET_AVX512)
/// PortableRows with AVX-512. Column rows are short (a layer's output width, 14 or 28 in W-CNN):
/// element loops of that length run mostly in scalar prologues and epilogues, so whole rows go
/// through one masked vector each.
struct Avx512Rows {
    static void copy(const float* __restrict src, std::size_t n, float* __restrict dst) noexcept {
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
        if (i < n) {
            const __mmask16 m = simd::first_lanes(n - i);
            _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
        }
    }

    static void add(const float* __restrict src, std::size_t n, float* __restrict dst) noexcept {
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), _mm512_loadu_ps(src + i)));
        if (i < n) {
            const __mmask16 m = simd::first_lanes(n - i);
            _mm512_mask_storeu_ps(
                dst + i, m,
                _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_maskz_loadu_ps(m, src + i)));
        }
    }

    static void zero(float* dst, std::size_t n) noexcept {
        std::size_t i = 0;
        const __m512 z = _mm512_setzero_ps();
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, z);
        if (i < n) _mm512_mask_storeu_ps(dst + i, simd::first_lanes(n - i), z);
    }

    static void add_sequence(const float* src, std::ptrdiff_t step, std::size_t count, std::size_t n,
                             float* __restrict dst) noexcept {
        const auto sum = [&](std::size_t i, __mmask16 m) {
            __m512 v = _mm512_maskz_loadu_ps(m, dst + i);
            for (std::size_t t = 0; t < count; ++t)
                v = _mm512_add_ps(v,
                                  _mm512_maskz_loadu_ps(m, src + static_cast<std::ptrdiff_t>(t) * step + i));
            _mm512_mask_storeu_ps(dst + i, m, v);
        };
        std::size_t i = 0;
        for (; i + 16 <= n; i += 16) sum(i, 0xFFFF);
        if (i < n) sum(i, simd::first_lanes(n - i));
    }
};

/// What the narrow AVX-512 paths below (stride 1, rows of at most 16 floats, each row one vector)
/// know per kernel column kw: output column o reads input column o + offset[kw] (offset = kw -
/// padding), and the output columns that read the image rather than padding (ValidSpan) are the
/// lanes `out_lanes[kw]` of a vector indexed by output column, or `in_lanes[kw]` of one indexed
/// by input column. Computed once per call, so the row loops have no tests.
struct NarrowRows {
    static constexpr std::size_t max_kernel = 16;
    __mmask16 out_lanes[max_kernel], in_lanes[max_kernel];
    std::ptrdiff_t offset[max_kernel];

    static bool applies(const ConvGeometry& g) noexcept {
        return g.stride == 1 && g.width <= 16 && g.out_width() <= 16 && g.kernel <= max_kernel;
    }
    explicit NarrowRows(const ConvGeometry& g) noexcept {
        for (std::size_t kw = 0; kw < g.kernel; ++kw) {
            const ValidSpan span = valid_span(kw, g.width, g.out_width(), 1, g.padding);
            const __mmask16 n = simd::first_lanes(span.hi - span.lo);
            const std::size_t first_in = span.lo + kw - g.padding; // input column of output column lo
            out_lanes[kw] = span.lo == span.hi ? __mmask16{0} : static_cast<__mmask16>(n << span.lo);
            in_lanes[kw] = span.lo == span.hi ? __mmask16{0} : static_cast<__mmask16>(n << first_in);
            offset[kw] = static_cast<std::ptrdiff_t>(kw) - static_cast<std::ptrdiff_t>(g.padding);
        }
    }
};

/// col2im for NarrowRows geometries, one input row at a time: the K x K kernel positions that read
/// input row r come from K column rows (one per kh that reaches r), each holding K shifted copies
/// of the row (one per kw). Each copy is one masked load whose lanes line up with the input row;
/// the sum stays in a register and reaches dx in one store per input row: no read-modify-write of
/// the same row by several passes, no lane permutations. Contributions are added in (kh, kw)
/// order, the portable path's order, so both give the same bits.
inline void col2im_narrow_avx512(const ConvGeometry& g, const float* col, std::size_t ld,
                                 float* dx) noexcept {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, w = g.width, pad = g.padding;
    const NarrowRows rows(g);
    const __mmask16 row_mask = simd::first_lanes(w);
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t r = 0; r < g.height; ++r) {
            float* d = dx + (c * g.height + r) * w;
            __m512 acc = _mm512_maskz_loadu_ps(row_mask, d);
            for (std::size_t kh = 0; kh < k; ++kh) {
                // Output row y reads input row y + kh - padding.
                if (r + pad < kh || r + pad - kh >= oh) continue;
                const float* plane_row = col + (c * k + kh) * k * ld + (r + pad - kh) * ow;
                for (std::size_t kw = 0; kw < k; ++kw)
                    if (rows.in_lanes[kw] != 0)
                        // Input lane i holds output column i - offset. The address stays inside
                        // the columns: kw * ld >= kw >= offset.
                        acc =
                            _mm512_add_ps(acc, _mm512_maskz_loadu_ps(rows.in_lanes[kw],
                                                                     plane_row + kw * ld - rows.offset[kw]));
            }
            _mm512_mask_storeu_ps(d, row_mask, acc);
        }
}

/// im2col for NarrowRows geometries: every output row of every column row is one masked load of
/// the input row it reads (lanes lined up with the output columns, padding lanes zero) and one
/// store, instead of copies and zero fills of a few floats each.
inline void im2col_narrow_avx512(const ConvGeometry& g, const float* x, float* col, std::size_t ld) noexcept {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, w = g.width, pad = g.padding;
    const NarrowRows lanes(g);
    const __mmask16 out_mask = simd::first_lanes(ow);
    for (std::size_t c = 0; c < g.channels; ++c)
        for (std::size_t kh = 0; kh < k; ++kh) {
            const ValidSpan rows = valid_span(kh, g.height, oh, 1, pad);
            for (std::size_t kw = 0; kw < k; ++kw) {
                float* dst = col + ((c * k + kh) * k + kw) * ld;
                for (std::size_t y = 0; y < oh; ++y, dst += ow) {
                    __m512 v = _mm512_setzero_ps();
                    if (y >= rows.lo && y < rows.hi) {
                        // Output lane o holds input column o + offset. The address of lane 0 may
                        // lie before the row (offset < 0), even before x; the lanes that load
                        // never do (masked-off lanes are not accessed).
                        const float* in_row = x + (c * g.height + y + kh - pad) * w;
                        v = _mm512_maskz_loadu_ps(lanes.out_lanes[kw], in_row + lanes.offset[kw]);
                    }
                    _mm512_mask_storeu_ps(dst, out_mask, v);
                }
            }
        }
}
PARDL_SIMD_TARGET_END
#endif

} // namespace detail

namespace detail {

/// im2col with the row operations of Rows.
template <class Rows>
void im2col_with(const ConvGeometry& g, const float* x, float* col, std::size_t ld) noexcept {
    const std::size_t ow = g.out_width(), s = g.stride;
    if (s == 1 && ow == g.width) {
        // A "same" convolution: column and input rows are equally long, so each (c, kh, kw) plane
        // is one contiguous shifted copy of the channel (long vectors instead of a short masked
        // copy per output row); the columns that read padding are then zeroed one by one.
        const std::size_t oh = g.out_height(), k = g.kernel, w = g.width;
        for (std::size_t c = 0; c < g.channels; ++c)
            for (std::size_t kh = 0; kh < k; ++kh) {
                const detail::ValidSpan rows = detail::valid_span(kh, g.height, oh, 1, g.padding);
                for (std::size_t kw = 0; kw < k; ++kw) {
                    const detail::ValidSpan cols = detail::valid_span(kw, w, ow, 1, g.padding);
                    float* dst = col + ((c * k + kh) * k + kw) * ld;
                    if (rows.lo == rows.hi || cols.lo == cols.hi) {
                        Rows::zero(dst, oh * ow);
                        continue;
                    }
                    Rows::zero(dst, rows.lo * ow);
                    Rows::zero(dst + rows.hi * ow, (oh - rows.hi) * ow);
                    // Output (y, o) reads input (y + kh - padding, o + kw - padding): with ow == w
                    // that is a fixed offset, so valid outputs from the first to the last form one
                    // range whose sources all lie inside the channel.
                    const std::size_t first = rows.lo * ow + cols.lo, last = (rows.hi - 1) * ow + cols.hi;
                    const float* src =
                        x + (c * g.height + rows.lo + kh - g.padding) * w + cols.lo + kw - g.padding;
                    Rows::copy(src, last - first, dst + first);
                    if (cols.lo != 0 || cols.hi != ow)
                        for (std::size_t y = rows.lo; y < rows.hi; ++y) {
                            float* row = dst + y * ow;
                            for (std::size_t o = 0; o < cols.lo; ++o) row[o] = 0.0f;
                            for (std::size_t o = cols.hi; o < ow; ++o) row[o] = 0.0f;
                        }
                }
            }
        return;
    }
    detail::for_each_col_row(
        g, ld, [&](std::size_t out, bool inside, std::size_t in, std::size_t kw, detail::ValidSpan span) {
            float* dst = col + out;
            if (!inside || span.lo == span.hi) {
                Rows::zero(dst, ow);
                return;
            }
            // Input column of output column o is o * s + kw - padding (non-negative for o >= lo).
            const float* src = x + in + span.lo * s + kw - g.padding;
            if (s == 1) {
                // Zero the whole row, then overwrite its valid span: two vector stores, not three loops.
                if (span.lo != 0 || span.hi != ow) Rows::zero(dst, ow);
                Rows::copy(src, span.hi - span.lo, dst + span.lo);
            } else {
                std::fill_n(dst, span.lo, 0.0f);
                for (std::size_t o = span.lo; o < span.hi; ++o) dst[o] = src[(o - span.lo) * s];
                std::fill(dst + span.hi, dst + ow, 0.0f);
            }
        });
}

/// col2im with the row operations of Rows.
template <class Rows>
void col2im_with(const ConvGeometry& g, const float* col, std::size_t ld, float* dx) noexcept {
    const std::size_t s = g.stride;
    detail::for_each_col_row(
        g, ld, [&](std::size_t out, bool inside, std::size_t in, std::size_t kw, detail::ValidSpan span) {
            if (!inside || span.lo == span.hi) return;
            const float* src = col + out;
            float* dst = dx + in + span.lo * s + kw - g.padding;
            if (s == 1)
                Rows::add(src + span.lo, span.hi - span.lo, dst);
            else
                for (std::size_t o = span.lo; o < span.hi; ++o) dst[(o - span.lo) * s] += src[o];
        });
}

} // namespace detail

namespace detail {

/// For the window that starts at padded coordinate `start` (output index * stride): the kernel
/// offsets [lo, hi) whose input index start + offset - padding lies in [0, extent).
constexpr ValidSpan window_span(std::size_t start, std::size_t extent, std::size_t kernel,
                                std::size_t padding) noexcept {
    const std::size_t lo = std::min(kernel, padding > start ? padding - start : 0);
    const std::size_t hi = std::clamp(extent + padding > start ? extent + padding - start : 0, lo, kernel);
    return {lo, hi};
}

/// The output columns [lo, hi) whose whole window row lies inside the image (no padding read).
constexpr ValidSpan full_window_span(const ConvGeometry& g) noexcept {
    const std::size_t ow = g.out_width();
    const std::size_t lo = std::min(ow, (g.padding + g.stride - 1) / g.stride);
    const std::size_t hi =
        g.width + g.padding >= g.kernel ? (g.width + g.padding - g.kernel) / g.stride + 1 : 0;
    return {lo, std::clamp(hi, lo, ow)};
}

/// im2row with the row operations of Rows. One window row (kh) of every output pixel of an output
/// row at a time: the pixels whose window row lies inside the image, all but the edges, are one
/// copy each of K * C consecutive floats, with no tests in the loop.
template <class Rows>
void im2row_with(const ConvGeometry& g, const float* x, float* rows) noexcept {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, c = g.channels, s = g.stride;
    const std::size_t window_row = k * c; // one kh of a window: K pixels of C channels
    const std::size_t patch = k * window_row;
    const ValidSpan full = full_window_span(g);
    for (std::size_t y = 0; y < oh; ++y) {
        const ValidSpan khs = window_span(y * s, g.height, k, g.padding);
        float* const out_row = rows + y * ow * patch;
        for (std::size_t kh = 0; kh < k; ++kh) {
            float* const dst = out_row + kh * window_row;
            if (kh < khs.lo || kh >= khs.hi) {
                for (std::size_t o = 0; o < ow; ++o) Rows::zero(dst + o * patch, window_row);
                continue;
            }
            const float* const in_row = x + (y * s + kh - g.padding) * g.width * c;
            const auto edge = [&](std::size_t o) {
                const ValidSpan kws = window_span(o * s, g.width, k, g.padding);
                float* d = dst + o * patch;
                if (kws.lo == kws.hi) return Rows::zero(d, window_row); // all padding
                Rows::zero(d, kws.lo * c);
                Rows::copy(in_row + (o * s + kws.lo - g.padding) * c, (kws.hi - kws.lo) * c, d + kws.lo * c);
                Rows::zero(d + kws.hi * c, (k - kws.hi) * c);
            };
            for (std::size_t o = 0; o < full.lo; ++o) edge(o);
            for (std::size_t o = full.lo; o < full.hi; ++o)
                Rows::copy(in_row + (o * s - g.padding) * c, window_row, dst + o * patch);
            for (std::size_t o = full.hi; o < ow; ++o) edge(o);
        }
    }
}

/// row2im with the row operations of Rows. Each input gets its contributions in (kh, kw) order,
/// col2im's, so the two give the same bits. Input column by input column: which kw reach it, and
/// from which output columns, is the same for every image row, so it is worked out once per
/// column. Then, kh by kh, an input pixel's contributions from that kh (one per kw that reaches
/// it) are summed in registers and added to it in one pass, rather than one read-modify-write of
/// the pixel per kw.
template <class Rows>
void row2im_with(const ConvGeometry& g, const float* rows, float* dx) noexcept {
    const std::size_t oh = g.out_height(), ow = g.out_width(), k = g.kernel, c = g.channels, s = g.stride;
    const std::size_t patch = g.patch_size(), pad = g.padding;
    // From one kw to the next one that reaches the same input column: kw + s, output column o - 1.
    const std::ptrdiff_t step = static_cast<std::ptrdiff_t>(s * c) - static_cast<std::ptrdiff_t>(patch);
    Rows::zero(dx, g.height * g.width * c);
    for (std::size_t i = 0; i < g.width; ++i) {
        // Input column i is read by kw = i + pad - o * s for the output columns o with
        // 0 <= kw < k: from the largest such o (smallest kw) down. The same for every image row.
        const std::size_t reach = i + pad; // o * s + kw
        const std::size_t o_last = std::min(ow - 1, reach / s);
        if (reach - o_last * s >= k) continue; // no kw reaches it
        const std::size_t kw_first = reach - o_last * s;
        const std::size_t count = std::min(o_last, (k - 1 - kw_first) / s) + 1;
        const float* const column = rows + o_last * patch + kw_first * c; // (y = 0, o_last, kh = 0, kw_first)
        for (std::size_t kh = 0; kh < k; ++kh) {
            const ValidSpan ys = valid_span(kh, g.height, oh, s, pad);
            for (std::size_t y = ys.lo; y < ys.hi; ++y)
                Rows::add_sequence(column + y * ow * patch + kh * k * c, step, count, c,
                                   dx + ((y * s + kh - pad) * g.width + i) * c);
        }
    }
}

} // namespace detail

/// col (patch_size x out_pixels, row-major, row stride ld >= out_pixels) = the windows of sample x
/// (C x H x W), zero padded; the ld - out_pixels floats after each row are not written.
/// Throws ConfigError only if PARDL_SIMD is invalid (see simd::active()).
inline void im2col(const ConvGeometry& g, const float* x, float* col, std::size_t ld) {
#if defined(PARDL_SIMD_X86)
    if (simd::active() == simd::Isa::avx512) {
        if (detail::NarrowRows::applies(g)) return detail::im2col_narrow_avx512(g, x, col, ld);
        return detail::im2col_with<detail::Avx512Rows>(g, x, col, ld);
    }
#endif
    detail::im2col_with<detail::PortableRows>(g, x, col, ld);
}
/// im2col into rows of exactly out_pixels floats.
inline void im2col(const ConvGeometry& g, const float* x, float* col) {
    im2col(g, x, col, g.out_pixels());
}

/// dx (C x H x W) += the column gradients (rows ld floats apart) scattered back to the inputs they
/// were read from; entries that read padding are dropped. dx must be initialised by the caller.
/// Throws ConfigError only if PARDL_SIMD is invalid (see simd::active()).
inline void col2im(const ConvGeometry& g, const float* col, std::size_t ld, float* dx) {
#if defined(PARDL_SIMD_X86)
    if (simd::active() == simd::Isa::avx512) {
        if (detail::NarrowRows::applies(g)) return detail::col2im_narrow_avx512(g, col, ld, dx);
        return detail::col2im_with<detail::Avx512Rows>(g, col, ld, dx);
    }
#endif
    detail::col2im_with<detail::PortableRows>(g, col, ld, dx);
}
/// col2im from rows of exactly out_pixels floats.
inline void col2im(const ConvGeometry& g, const float* col, float* dx) {
    col2im(g, col, g.out_pixels(), dx);
}

/// rows (out_pixels x patch_size, row-major) = the windows of sample x stored channels-last
/// (H x W x C), zero padded: row oh * OW + ow holds the window of output pixel (oh, ow), element
/// (kh, kw, c) at (kh * K + kw) * C + c. Row r of this matrix is column r of im2col's, reordered.
inline void im2row(const ConvGeometry& g, const float* x, float* rows) {
#if defined(PARDL_SIMD_X86)
    if (simd::active() == simd::Isa::avx512) return detail::im2row_with<detail::Avx512Rows>(g, x, rows);
#endif
    detail::im2row_with<detail::PortableRows>(g, x, rows);
}

/// dx (H x W x C, channels-last) = the row gradients scattered back to the inputs they were read
/// from (im2row's adjoint); dx is overwritten and entries that read padding are dropped. Each input
/// gets the same sum, in the same order, as col2im gives it from the matching columns.
inline void row2im(const ConvGeometry& g, const float* rows, float* dx) {
#if defined(PARDL_SIMD_X86)
    if (simd::active() == simd::Isa::avx512) return detail::row2im_with<detail::Avx512Rows>(g, rows, dx);
#endif
    detail::row2im_with<detail::PortableRows>(g, rows, dx);
}

} // namespace pardl
