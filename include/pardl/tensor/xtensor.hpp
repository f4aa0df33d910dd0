// The one place pardl includes xtensor: Debian ships 0.24 with flat headers, upstream >= 0.26 moved
// them into subfolders, so every other header includes this shim instead of xtensor directly.
#pragma once

#if __has_include(<xtensor/xadapt.hpp>)
#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>
#else
#include <xtensor/containers/xadapt.hpp>
#include <xtensor/containers/xtensor.hpp>
#include <xtensor/core/xmath.hpp>
#include <xtensor/views/xview.hpp>
#endif

#include "pardl/tensor/view.hpp"

namespace pardl {

/// An xtensor expression over a matrix view's memory (no copy); rows x cols with its stride.
template <class T>
auto as_xtensor(MatrixView<T> m) {
    using value_type = std::remove_const_t<T>;
    std::array<std::size_t, 2> shape{m.rows, m.cols};
    std::array<std::ptrdiff_t, 2> strides{static_cast<std::ptrdiff_t>(m.stride), 1};
    return xt::adapt(const_cast<value_type*>(m.data), m.rows * m.stride, xt::no_ownership(), shape, strides);
}

} // namespace pardl
