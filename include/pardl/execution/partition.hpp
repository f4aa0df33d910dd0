// The one partition function: every split in pardl (batch over ranks, rank share over threads,
// test set over ranks, gradient vector over threads, a layer's columns over a tensor-parallel team)
// goes through balanced_range.
#pragma once

#include <cassert>
#include <cstddef>

#include "pardl/tensor/buffer.hpp"

namespace pardl {

/// A half-open index range [begin, end).
struct Range {
    std::size_t begin = 0;
    std::size_t end = 0;
    constexpr std::size_t size() const noexcept { return end - begin; }
    constexpr bool empty() const noexcept { return begin == end; }
    friend constexpr bool operator==(Range, Range) = default;
};

/// Part `part` of `parts` near-equal contiguous pieces of [0, total): sizes differ by at most one,
/// the first total % parts pieces are the larger ones, and pieces may be empty (total < parts).
constexpr Range balanced_range(std::size_t total, std::size_t part, std::size_t parts) noexcept {
    assert(parts > 0 && part < parts);
    const std::size_t base = total / parts;
    const std::size_t extra = total % parts;
    const std::size_t begin = part * base + (part < extra ? part : extra);
    return {begin, begin + base + (part < extra ? 1 : 0)};
}

/// The largest piece balanced_range produces: what a worker's buffers must hold.
constexpr std::size_t max_part_size(std::size_t total, std::size_t parts) noexcept {
    return (total + parts - 1) / parts;
}

/// Part `part` of `parts` of [0, n), cut at multiples of `unit`: balanced_range over the units,
/// so no two parts share one (the last unit may be short, and n < unit stays in the first part).
constexpr Range unit_share(std::size_t n, std::size_t part, std::size_t parts, std::size_t unit) noexcept {
    const Range units = balanced_range((n + unit - 1) / unit, part, parts);
    const std::size_t begin = units.begin * unit, end = units.end * unit;
    return {begin < n ? begin : n, end < n ? end : n};
}

/// Part `part` of `parts` of [0, n) floats, cut at whole cache lines (cache_line_floats), so no two
/// parts share a line. Threads that write their parts of one buffer (the gradient sum's chunks, a
/// tensor-parallel layer's columns) never write the same line, and a buffer shorter than a line (Dense<10>'s
/// ten columns) stays in the first part.
constexpr Range line_share(std::size_t n, std::size_t part, std::size_t parts) noexcept {
    return unit_share(n, part, parts, cache_line_floats);
}

} // namespace pardl
