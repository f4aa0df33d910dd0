// Weight initialisers (He / Xavier, normal or uniform) drawing from an explicit seeded Rng, so a
// model's initial parameters depend only on the seed.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "pardl/core/rng.hpp"

namespace pardl {

/// He (Kaiming) normal: N(0, 2 / fan_in); the default for ReLU networks.
struct HeNormal {
    static void fill(std::span<float> w, std::size_t fan_in, std::size_t /*fan_out*/, Rng& rng) {
        const float sd = std::sqrt(2.0f / static_cast<float>(fan_in));
        for (float& v : w) v = sd * rng.normal();
    }
    static std::string name() { return "he-normal"; }
};

/// He uniform: U(-a, a), a = sqrt(6 / fan_in).
struct HeUniform {
    static void fill(std::span<float> w, std::size_t fan_in, std::size_t, Rng& rng) {
        const float a = std::sqrt(6.0f / static_cast<float>(fan_in));
        for (float& v : w) v = rng.uniform(-a, a);
    }
    static std::string name() { return "he-uniform"; }
};

/// Xavier (Glorot) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); for tanh/sigmoid nets.
struct XavierUniform {
    static void fill(std::span<float> w, std::size_t fan_in, std::size_t fan_out, Rng& rng) {
        const float a = std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
        for (float& v : w) v = rng.uniform(-a, a);
    }
    static std::string name() { return "xavier-uniform"; }
};

/// Xavier normal: N(0, 2 / (fan_in + fan_out)).
struct XavierNormal {
    static void fill(std::span<float> w, std::size_t fan_in, std::size_t fan_out, Rng& rng) {
        const float sd = std::sqrt(2.0f / static_cast<float>(fan_in + fan_out));
        for (float& v : w) v = sd * rng.normal();
    }
    static std::string name() { return "xavier-normal"; }
};

template <class I>
concept Initializer = requires(std::span<float> w, Rng& rng) {
    I::fill(w, std::size_t{1}, std::size_t{1}, rng);
    { I::name() } -> std::convertible_to<std::string>;
};

} // namespace pardl
