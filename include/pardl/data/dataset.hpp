// An in-memory dataset (one float row per sample, int32 class labels, optional regression targets)
// and the Batch views a loader hands to the trainer. Readers (IDX, CIFAR-10) and the synthetic
// generators all produce this one type, so the trainer never knows where the data came from.
#pragma once

#include "pardl/core/errors.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/view.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace pardl {

/// One mini-batch: rows gathered contiguously, labels and (for regression) targets alongside.
/// `targets` is an empty view (data == nullptr) for classification data.
struct Batch {
    ConstMatrix x;
    std::span<const std::int32_t> labels;
    ConstMatrix targets;

    std::size_t rows() const noexcept { return x.rows; }
};

/// A whole dataset in memory. Move-only (its buffers are); `head` makes an explicit copy.
struct Dataset {
    AlignedBuffer<float> features;      ///< rows x cols, row-major
    AlignedBuffer<std::int32_t> labels; ///< rows entries, each in [0, classes) for classification
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t classes = 0;               ///< 0 for pure regression sets
    std::vector<std::size_t> sample_shape; ///< e.g. {1, 28, 28}; its product is cols

    AlignedBuffer<float> targets; ///< rows x target_cols regression targets; empty if none
    std::size_t target_cols = 0;

    /// The features as a rows x cols read-only matrix.
    ConstMatrix x() const noexcept { return {features.data(), rows, cols}; }
    /// The labels, one per row.
    std::span<const std::int32_t> y() const noexcept { return {labels.data(), labels.size()}; }
    /// The regression targets (rows x target_cols), or an empty view if there are none.
    ConstMatrix t() const noexcept {
        if (target_cols == 0 || targets.empty()) return {};
        return {targets.data(), rows, target_cols};
    }
    bool has_targets() const noexcept { return target_cols != 0 && !targets.empty(); }
    bool empty() const noexcept { return rows == 0; }

    /// The whole dataset viewed as one batch.
    Batch all() const noexcept { return {x(), y(), t()}; }

    /// Throws DataError unless the buffers hold what rows, cols, sample_shape and target_cols say,
    /// and, in a classification set (classes > 0), every label lies in [0, classes); a regression
    /// set's labels (classes 0, make_regression's zeros) are not class indices and are not read
    /// as such. The trainer checks every dataset it is given to train or evaluate on: a label past
    /// the model's outputs would otherwise index out of bounds.
    void check(const std::string& name = "dataset") const {
        const auto need = [&](bool ok, const std::string& what) {
            if (!ok) throw DataError(name + ": " + what);
        };
        need(features.size() == rows * cols, "features hold " + std::to_string(features.size()) +
                                                 " values, rows x cols = " + std::to_string(rows) + " x " +
                                                 std::to_string(cols));
        if (!sample_shape.empty()) {
            const std::size_t product = std::accumulate(sample_shape.begin(), sample_shape.end(),
                                                        std::size_t{1}, std::multiplies<>());
            need(product == cols, "the sample shape holds " + std::to_string(product) + " values, a row " +
                                      std::to_string(cols));
        }
        need(targets.size() == rows * target_cols,
             "targets hold " + std::to_string(targets.size()) + " values, rows x target_cols = " +
                 std::to_string(rows) + " x " + std::to_string(target_cols));
        need(labels.empty() || labels.size() == rows,
             "there are " + std::to_string(labels.size()) + " labels for " + std::to_string(rows) + " rows");
        for (std::size_t r = 0; classes > 0 && r < labels.size(); ++r)
            need(labels[r] >= 0 && static_cast<std::size_t>(labels[r]) < classes,
                 "row " + std::to_string(r) + " has label " + std::to_string(labels[r]) + ", outside [0, " +
                     std::to_string(classes) + ")");
    }

    /// A copy of the first min(n, rows) rows (features, labels and targets).
    Dataset head(std::size_t n) const {
        Dataset d;
        const std::size_t r = std::min(n, rows);
        d.rows = r;
        d.cols = cols;
        d.classes = classes;
        d.sample_shape = sample_shape;
        d.target_cols = target_cols;
        d.features.resize(r * cols);
        if (r * cols != 0) std::copy_n(features.data(), r * cols, d.features.data());
        if (!labels.empty()) {
            d.labels.resize(r);
            if (r) std::copy_n(labels.data(), r, d.labels.data());
        }
        if (has_targets()) {
            d.targets.resize(r * target_cols);
            if (r * target_cols != 0) std::copy_n(targets.data(), r * target_cols, d.targets.data());
        }
        return d;
    }
};

namespace detail {
/// a x b, the size of a buffer of `what`; ConfigError where the product does not fit in a size_t
/// (a buffer of the wrapped size would be written past its end).
inline std::size_t size_product(std::size_t a, std::size_t b, const char* what) {
    std::size_t product = 0;
    PARDL_REQUIRE(!__builtin_mul_overflow(a, b, &product), ConfigError, what, ": ", a, " x ", b,
                  " values are more than any memory holds");
    return product;
}

/// Allocates a dataset's buffers for `rows` samples of `shape` (zeroed).
inline Dataset make_dataset(std::size_t rows, std::vector<std::size_t> shape, std::size_t classes,
                            std::size_t target_cols = 0) {
    Dataset d;
    std::size_t cols = 1;
    for (std::size_t s : shape) cols = size_product(cols, s, "dataset: a sample");
    d.rows = rows;
    d.cols = cols;
    d.classes = classes;
    d.sample_shape = std::move(shape);
    d.features.resize(size_product(rows, cols, "dataset: the features"));
    d.labels.resize(rows);
    d.target_cols = target_cols;
    if (target_cols) d.targets.resize(size_product(rows, target_cols, "dataset: the targets"));
    return d;
}
} // namespace detail

} // namespace pardl
