// Compile-time shapes of one sample: Shape<Features> for vectors, Shape<C, H, W> for images.
// A batch is always (rows = samples) x (Shape::size columns), row-major, so layers agree on layout.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <type_traits>

namespace pardl {

template <std::size_t... Dims>
struct Shape {
    static_assert(sizeof...(Dims) > 0, "pardl: a Shape needs at least one dimension");
    static_assert(((Dims > 0) && ...), "pardl: every Shape dimension must be positive");

    static constexpr std::size_t rank = sizeof...(Dims);
    static constexpr std::size_t size = (Dims * ...);
    static constexpr std::array<std::size_t, rank> dims{Dims...};

    /// "1x28x28": used by describe() and diagnostics.
    static std::string str() {
        std::string s;
        for (std::size_t i = 0; i < rank; ++i) {
            if (i) s += 'x';
            s += std::to_string(dims[i]);
        }
        return s;
    }
};

template <class T>
struct is_shape : std::false_type {};
template <std::size_t... D>
struct is_shape<Shape<D...>> : std::true_type {};

/// Satisfied by Shape<...> instantiations only.
template <class T>
concept ShapeType = is_shape<T>::value;

/// Shape<C, H, W> accessors (images); only valid for rank-3 shapes.
template <ShapeType S>
requires(S::rank == 3) struct ImageDims {
    static constexpr std::size_t channels = S::dims[0];
    static constexpr std::size_t height = S::dims[1];
    static constexpr std::size_t width = S::dims[2];
};

} // namespace pardl
