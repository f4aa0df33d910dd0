// Must NOT compile: `int` is not a pardl layer. The diagnostic must say so and name the index.
#include "pardl/layers/dense.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/model/sequential.hpp"

#include <cstddef>

using Model = pardl::Sequential<pardl::Input<4>, pardl::Dense<3>, int>;

int main() {
    constexpr std::size_t n = Model::param_count;
    return static_cast<int>(n % 2);
}
