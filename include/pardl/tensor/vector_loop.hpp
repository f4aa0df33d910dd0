// Elementwise loops over float arrays, written in vectors instead of left to the compiler's
// auto-vectoriser. At -O2 (CMake's RelWithDebInfo, Debian's package flags) GCC 12 vectorises no
// loop whose trip count is known only at run time, and pardl's optimizer updates, gradient scaling
// and worker sums ran 2.6 times slower than at -O3: W-MLP took 0.76 s per epoch against 0.55
// (docs/performance.md). These loops are memory-bound, so the vectors are those of the instruction
// set the compiler targets, no run-time dispatch (unlike the GEMM's), and at most 256 bits wide:
// 256-bit AVX2 with FMA where the compiler has it (also under -march=native on an AVX-512 CPU),
// else xsimd's default architecture (SSE2 for plain x86-64, NEON on ARM). 512-bit vectors made
// the same loops slower on the Intel Xeon of docs/performance.md: the W-MLP shared-memory
// allreduce phase took 0.070 s per 600 steps with them against 0.045 with 256-bit ones, and the
// SGD update about 2% longer (a core that has just waited in a barrier runs its first 512-bit
// instructions slowly); GCC's own vectoriser also stays at 256 bits for these CPUs.
#pragma once

#include "pardl/tensor/simd.hpp"

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

/// Whether xsimd has vectors for the architecture the compiler targets.
#define PARDL_VECTOR_LOOP_SIMD                                                                               \
    (XSIMD_WITH_AVX512F || XSIMD_WITH_AVX || XSIMD_WITH_SSE2 || XSIMD_WITH_NEON || XSIMD_WITH_NEON64)

namespace pardl::simd {

#if XSIMD_WITH_FMA3_AVX2
/// The vector for_each_vector hands its function: 8 floats, with fused multiply-adds.
using FloatVector = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;
inline constexpr std::size_t float_lanes = FloatVector::size;
#elif PARDL_VECTOR_LOOP_SIMD
/// The vector for_each_vector hands its function: xsimd's batch of the target architecture.
using FloatVector = xsimd::batch<float>;
inline constexpr std::size_t float_lanes = FloatVector::size;
#else
/// No SIMD architecture xsimd knows: one float at a time (fma, fnma, sqrt, select below).
using FloatVector = float;
inline constexpr std::size_t float_lanes = 1;
#endif

/// A vector of `x` in every lane.
inline FloatVector broadcast(float x) noexcept {
    return FloatVector(x);
}

/// Lane by lane: a * b + c, with one rounding where the instruction set has fused multiply-adds
/// (AVX2+FMA, NEON; SSE2 rounds the product too).
inline FloatVector fma(const FloatVector& a, const FloatVector& b, const FloatVector& c) noexcept {
#if PARDL_VECTOR_LOOP_SIMD
    return xsimd::fma(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}

/// Lane by lane: c - a * b, rounded as fma.
inline FloatVector fnma(const FloatVector& a, const FloatVector& b, const FloatVector& c) noexcept {
#if PARDL_VECTOR_LOOP_SIMD
    return xsimd::fnma(a, b, c);
#else
    return std::fma(-a, b, c);
#endif
}

/// Lane by lane: the square root, correctly rounded (as std::sqrt).
inline FloatVector sqrt(const FloatVector& v) noexcept {
#if PARDL_VECTOR_LOOP_SIMD
    return xsimd::sqrt(v);
#else
    return std::sqrt(v);
#endif
}

#if PARDL_VECTOR_LOOP_SIMD
/// Lane by lane: `a` where `mask` (a comparison of FloatVectors) holds, else `b`.
using xsimd::select;
#else
inline float select(bool mask, float a, float b) noexcept {
    return mask ? a : b;
}
#endif

namespace detail {

#if PARDL_VECTOR_LOOP_SIMD
inline FloatVector load_lanes(const float* p) noexcept {
    return FloatVector::load_unaligned(p);
}
inline void store_lanes(float* p, const FloatVector& v) noexcept {
    v.store_unaligned(p);
}
#else
inline FloatVector load_lanes(const float* p) noexcept {
    return *p;
}
inline void store_lanes(float* p, FloatVector v) noexcept {
    *p = v;
}
#endif

/// fn on the vectors at p..., then the non-const arrays' vectors stored back.
template <class Fn, class... T, std::size_t... K>
inline void vector_step(Fn& fn, std::index_sequence<K...>, T*... p) {
    FloatVector v[sizeof...(T)] = {load_lanes(p)...};
    fn(v[K]...);
    (
        [&] {
            if constexpr (!std::is_const_v<T>) store_lanes(p, v[K]);
        }(),
        ...);
}

/// vector_step on the first `count` (< float_lanes) elements at p...: the other lanes hold zeros
/// and are neither read nor written. With AVX2, masked loads and a store in pieces (see
/// store_first_avx2); otherwise through zero-padded copies.
template <class Fn, class... T, std::size_t... K>
inline void partial_step(Fn& fn, [[maybe_unused]] std::index_sequence<K...> lanes, std::size_t count,
                         T*... p) {
#if XSIMD_WITH_FMA3_AVX2 && defined(PARDL_SIMD_X86)
    const __m256i mask = first_lanes_avx2(count);
    FloatVector v[sizeof...(T)] = {FloatVector(_mm256_maskload_ps(p, mask))...};
    fn(v[K]...);
    (
        [&] {
            if constexpr (!std::is_const_v<T>) store_first_avx2(p, count, _mm256_castps_si256(v[K]));
        }(),
        ...);
#else
    alignas(64) float padded[sizeof...(T)][float_lanes] = {};
    (std::copy_n(p, count, padded[K]), ...);
    vector_step(fn, lanes, static_cast<T*>(padded[K])...);
    (
        [&] {
            if constexpr (!std::is_const_v<T>) std::copy_n(padded[K], count, p);
        }(),
        ...);
#endif
}

} // namespace detail

/// Calls fn(a, b, ...) with one FloatVector& for each array, at every vector of elements [0, n),
/// and stores the vectors of the non-const arrays back. Two arrays may be the same one (an
/// in-place pass) but must not otherwise overlap. The last, partial vector runs through the same
/// function with zeros in its missing lanes, so every element passes through the same
/// instructions whatever n and wherever a slice starts: an optimizer's update then gives the same
/// bits however the executor slices its vector (the Optimizer concept asks for that).
template <class Fn, class... T>
void for_each_vector(std::size_t n, Fn&& fn, T*... arrays) {
    static_assert(sizeof...(T) > 0 && (std::is_same_v<std::remove_const_t<T>, float> && ...),
                  "pardl: for_each_vector takes float arrays");
    constexpr std::size_t w = float_lanes;
    const auto lanes = std::make_index_sequence<sizeof...(T)>{};
    std::size_t i = 0;
    for (; i + w <= n; i += w) detail::vector_step(fn, lanes, (arrays + i)...);
    if (i < n) detail::partial_step(fn, lanes, n - i, (arrays + i)...);
}

/// Lane by lane: x clamped to [lo, hi], where NaN stays NaN (comparisons with it are false).
/// std::min/max-style instructions would return an operand for NaN instead, turning a diverging
/// gradient into a bound.
inline FloatVector clamp(const FloatVector& x, const FloatVector& lo, const FloatVector& hi) noexcept {
    return select(x > hi, hi, select(x < lo, lo, x));
}

/// The sum of a vector's lanes, halves added pairwise (lane i + lane i + width/2, then again):
/// an order of our own, the same whichever xsimd version builds it.
inline float lane_sum(const FloatVector& v) noexcept {
    alignas(64) float lanes[float_lanes];
    detail::store_lanes(lanes, v);
    for (std::size_t width = float_lanes / 2; width >= 1; width /= 2)
        for (std::size_t i = 0; i < width; ++i) lanes[i] += lanes[i + width];
    return lanes[0];
}

/// The sum of p[i]^2 over [0, n): four chains of vector fused multiply-adds, each over a quarter
/// of the array (the rest on the first), then the chains added lane by lane and the lanes added
/// (lane_sum), in float: the same bits for the same array wherever it lies. One chain would wait
/// on each FMA's latency; adding the 4 × float_lanes lanes one by one in double, as this did
/// first, was a chain of that many dependent adds per call, and the clipping norm calls it for
/// every 2048 floats. Where the float sum overflows (a sum of squares beyond FLT_MAX, about
/// 3.4e38), it is made again in double.
inline double sum_of_squares(const float* p, std::size_t n) {
    const std::size_t quarter = n / (4 * float_lanes) * float_lanes;
    FloatVector acc[4] = {broadcast(0.0f), broadcast(0.0f), broadcast(0.0f), broadcast(0.0f)};
    for_each_vector(
        quarter,
        [&](const FloatVector& a, const FloatVector& b, const FloatVector& c, const FloatVector& d) {
            acc[0] = fma(a, a, acc[0]);
            acc[1] = fma(b, b, acc[1]);
            acc[2] = fma(c, c, acc[2]);
            acc[3] = fma(d, d, acc[3]);
        },
        p, p + quarter, p + 2 * quarter, p + 3 * quarter);
    for_each_vector(
        n - 4 * quarter, [&](const FloatVector& a) { acc[0] = fma(a, a, acc[0]); }, p + 4 * quarter);
    double total = lane_sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
    if (!std::isfinite(total)) {
        total = 0;
        for (std::size_t i = 0; i < n; ++i) total += static_cast<double>(p[i]) * p[i];
    }
    return total;
}

} // namespace pardl::simd
