// Non-owning row-major matrix views. A batch of samples is a Matrix with one sample per row and
// Shape::size columns; `stride` (elements between row starts) lets views pick sub-blocks.
#pragma once

#include <cassert>
#include <cstddef>
#include <span>
#include <type_traits>

namespace pardl {

template <class T>
struct MatrixView {
    T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;
    std::size_t stride = 0; ///< elements between the starts of consecutive rows (>= cols)

    constexpr MatrixView() = default;
    constexpr MatrixView(T* d, std::size_t r, std::size_t c) : data(d), rows(r), cols(c), stride(c) {}
    constexpr MatrixView(T* d, std::size_t r, std::size_t c, std::size_t s)
        : data(d), rows(r), cols(c), stride(s) {}

    /// A mutable view converts to a read-only one.
    template <class U>
    requires(std::is_const_v<T>&& std::is_same_v<std::remove_const_t<T>, U>) constexpr MatrixView(
        const MatrixView<U>& m)
        : data(m.data), rows(m.rows), cols(m.cols), stride(m.stride) {}

    constexpr T* row(std::size_t r) const noexcept {
        assert(r < rows);
        return data + r * stride;
    }
    constexpr T& operator()(std::size_t r, std::size_t c) const noexcept {
        assert(r < rows && c < cols);
        return data[r * stride + c];
    }
    /// Rows [first, first + count).
    constexpr MatrixView row_block(std::size_t first, std::size_t count) const noexcept {
        assert(first + count <= rows);
        return {data + first * stride, count, cols, stride};
    }
    /// Columns [first, first + count) of every row.
    constexpr MatrixView columns(std::size_t first, std::size_t count) const noexcept {
        assert(first + count <= cols);
        return {data + first, rows, count, stride};
    }
    constexpr bool contiguous() const noexcept { return stride == cols || rows <= 1; }
    constexpr std::size_t size() const noexcept { return rows * cols; }
    constexpr bool empty() const noexcept { return data == nullptr; }
    /// The elements as one span; only for contiguous views.
    std::span<T> flat() const noexcept {
        assert(contiguous());
        return {data, rows * cols};
    }
};

using Matrix = MatrixView<float>;
using ConstMatrix = MatrixView<const float>;

} // namespace pardl
