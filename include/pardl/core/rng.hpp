// Deterministic random numbers: a counter-based hash for things keyed by (seed, epoch, sample)
// and a small seeded stream for initialisers. Both are bit-identical on every platform, which the
// standard distributions are not, so every rank and every policy draws the same numbers.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

namespace pardl {

/// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// Counter-based hash of a key tuple: the same keys give the same bits, whoever asks.
constexpr std::uint64_t hash_keys(std::uint64_t a, std::uint64_t b = 0, std::uint64_t c = 0,
                                  std::uint64_t d = 0) noexcept {
    return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d);
}

/// Uniform float in [0, 1) from the top 24 bits of a 64-bit word.
constexpr float to_unit_float(std::uint64_t bits) noexcept {
    return static_cast<float>(bits >> 40) * (1.0f / 16777216.0f);
}

/// A seeded sequential generator (SplitMix64 stream) with portable uniform and normal draws.
class Rng {
public:
    explicit constexpr Rng(std::uint64_t seed, std::uint64_t stream = 0) noexcept
        : state_(hash_keys(seed, stream)) {}

    constexpr std::uint64_t next() noexcept {
        state_ += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = state_;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    /// Uniform in [0, 1).
    float uniform() noexcept { return to_unit_float(next()); }

    /// Uniform in [lo, hi).
    float uniform(float lo, float hi) noexcept { return lo + (hi - lo) * uniform(); }

    /// Uniform integer in [0, n) (n > 0), by Lemire's multiply-shift (bias < 2^-32 for our n).
    std::uint64_t below(std::uint64_t n) noexcept {
        __extension__ using u128 = unsigned __int128;
        return static_cast<std::uint64_t>((static_cast<u128>(next()) * n) >> 64);
    }

    /// Standard normal by Box-Muller in double precision (portable, unlike std::normal_distribution).
    float normal() noexcept {
        // u1 in (0, 1] so that log(u1) is finite.
        const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53;
        const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
        return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
    }

private:
    std::uint64_t state_;
};

} // namespace pardl
