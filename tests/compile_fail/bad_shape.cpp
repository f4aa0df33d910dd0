// Must NOT compile: Dense takes flat inputs only, and this model feeds it a 1x28x28 image.
// check_compile_fail.cmake requires the diagnostic to name the layer index, the layer and the shape.
#include "pardl/layers/dense.hpp"
#include "pardl/model/sequential.hpp"

#include <cstddef>

using Model = pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Dense<10>>;

int main() {
    constexpr std::size_t n = Model::param_count;
    return static_cast<int>(n % 2);
}
