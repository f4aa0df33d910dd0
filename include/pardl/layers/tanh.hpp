// Tanh activation.
#pragma once

#include <cmath>

#include "pardl/layers/activation.hpp"

namespace pardl {

namespace detail {
struct TanhFn {
    static float value(float x) { return std::tanh(x); }
    static float derivative_from_output(float y) { return 1.0f - y * y; }
    static std::string name() { return "Tanh"; }
};
} // namespace detail

using Tanh = Activation<detail::TanhFn>;

} // namespace pardl
