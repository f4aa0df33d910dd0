// Whether the ranks of a job hold the same named values (settings, flags), and which differ:
// what the trainer's check of its settings and the examples' check of their flags share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pardl {

namespace detail {
/// FNV-1a, 64 bits, over bytes added in order: the trainer's parameter checksum, its settings
/// fingerprint, and the comparisons below.
struct Fnv1a {
    std::uint64_t value = 1469598103934665603ULL;
    void add(const void* data, std::size_t bytes) {
        const auto* p = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < bytes; ++i) value = (value ^ p[i]) * 1099511628211ULL;
    }
    /// A text and a byte no text holds after it, so that ("ab", "c") and ("a", "bc") differ.
    void add_text(const std::string& text) {
        const unsigned char end = 0xFF;
        add(text.data(), text.size());
        add(&end, 1);
    }
};
} // namespace detail

/// The entries of `named` (name, value) whose values differ between ranks, as "name (this rank:
/// value), ..." with this rank's values; "" where every rank holds the same; nothing where the
/// lists do not name the same entries in the same order on every rank (then no value is
/// compared). `max_over_ranks(v)` is the largest of every rank's std::uint64_t v, a collective;
/// every rank calls this with its own list, and the collectives run in the same order everywhere
/// (two for the names, two per entry).
template <class MaxOverRanks>
std::optional<std::string>
differing_across_ranks(const std::vector<std::pair<std::string, std::string>>& named,
                       MaxOverRanks&& max_over_ranks) {
    const auto differs = [&](std::uint64_t h) { return max_over_ranks(h) != ~max_over_ranks(~h); };
    detail::Fnv1a names;
    for (const auto& entry : named) names.add_text(entry.first);
    if (differs(names.value)) return std::nullopt;
    std::string differ;
    for (const auto& [name, value] : named) {
        detail::Fnv1a h;
        h.add_text(name);
        h.add_text(value);
        if (differs(h.value))
            differ += (differ.empty() ? "" : ", ") + name +
                      " (this rank: " + (value.empty() ? "not given" : value) + ")";
    }
    return differ;
}

} // namespace pardl
