// Bytes through a communicator that moves floats (its broadcast): three bytes a float, each float
// an integer below 2^24 and so exact. For the few texts ranks exchange (rank 0's notes on a
// checkpoint, every rank's trace events at the end of a run), not for the training's numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pardl::detail {

/// Gives every rank root's `bytes`: a collective, with bytes.size() the same on every rank.
/// `floats` is the carrier, resized to (size + 2) / 3 (reuse one to broadcast in chunks).
template <class Comm>
void broadcast_bytes(Comm& comm, std::span<char> bytes, int root, std::vector<float>& floats) {
    const std::size_t n = bytes.size();
    floats.resize((n + 2) / 3);
    const auto byte = [&](std::size_t i) -> std::uint32_t {
        return i < n ? static_cast<unsigned char>(bytes[i]) : 0u;
    };
    if (comm.rank() == root)
        for (std::size_t f = 0; f < floats.size(); ++f)
            floats[f] = static_cast<float>(byte(3 * f) | byte(3 * f + 1) << 8 | byte(3 * f + 2) << 16);
    comm.broadcast(std::span<float>(floats), root);
    if (comm.rank() == root) return;
    for (std::size_t i = 0; i < n; ++i)
        bytes[i] = static_cast<char>(static_cast<std::uint32_t>(floats[i / 3]) >> (8 * (i % 3)) & 0xFFu);
}

} // namespace pardl::detail
