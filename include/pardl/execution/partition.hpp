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

/// Part `part` of `parts` of [0, n) floats, cut at whole cache lines (cache_line_floats): balanced_range
/// over the lines, so no two parts share a line. Threads that write their parts of one buffer
/// (the gradient sum's chunks, a tensor-parallel layer's columns) never write the same line, and
/// a buffer shorter than a line (Dense<10>'s ten columns) stays in the first part.
constexpr Range line_share(std::size_t n, std::size_t part, std::size_t parts) noexcept {
    constexpr std::size_t line = cache_line_floats;
    const Range lines = balanced_range((n + line - 1) / line, part, parts);
    const std::size_t begin = lines.begin * line, end = lines.end * line;
    return {begin < n ? begin : n, end < n ? end : n};
}

} // namespace pardl
