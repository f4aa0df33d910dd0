// The loss contract and its Targets argument. Losses return the SUM over their rows and write
// the gradient of that sum, so shards of any size combine exactly; the trainer divides once by
// the global sample count.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pardl/tensor/shape.hpp"
#include "pardl/tensor/view.hpp"

namespace pardl {

/// What the model output is compared with: class labels, target values, or both.
struct Targets {
    std::span<const std::int32_t> labels; ///< one class index per row (classification)
    ConstMatrix values;                   ///< one target row per row (regression); may be empty
};

/// requires
///  - `accepts<OutputShape>`: whether the loss applies to that model output.
///  - `forward_backward(out, targets, dout)`: returns sum over rows of the per-row loss (double),
///    and overwrites dout (same size as out) with d(sum)/d(out).
///  - `loss(out, targets)`: the same sum, without the gradient.
///  - `correct(out, targets)`: rows whose argmax equals the label (0 without labels).
/// and may say what it reads, so that the trainer checks a dataset has it before a step reads it:
///  - `reads_labels`: one class index per row, each below the model's output width;
///  - `reads_targets`: one target row per row, as wide as the model's output.
template <class L>
concept Loss = requires(ConstMatrix out, const Targets& t, Matrix dout) {
    { L::forward_backward(out, t, dout) } -> std::convertible_to<double>;
    { L::loss(out, t) } -> std::convertible_to<double>;
    { L::correct(out, t) } -> std::convertible_to<std::size_t>;
    { L::name() } -> std::convertible_to<const char*>;
};

namespace detail {
/// Index of the largest entry of row r (first one on ties).
inline std::size_t argmax_row(ConstMatrix m, std::size_t r) {
    const float* p = m.row(r);
    std::size_t best = 0;
    for (std::size_t j = 1; j < m.cols; ++j)
        if (p[j] > p[best]) best = j;
    return best;
}

inline std::size_t count_argmax_matches(ConstMatrix out, std::span<const std::int32_t> labels) {
    if (labels.empty()) return 0;
    std::size_t n = 0;
    for (std::size_t r = 0; r < out.rows; ++r) n += argmax_row(out, r) == static_cast<std::size_t>(labels[r]);
    return n;
}
} // namespace detail

} // namespace pardl
