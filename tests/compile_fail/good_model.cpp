// The control for the compile-fail checks: the same shape of program with a valid model must
// compile, so a failure of the others is due to the model and not to the harness.
#include "pardl/layers/dense.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/layers/relu.hpp"
#include "pardl/model/sequential.hpp"

#include <cstddef>

using Model = pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Flatten, pardl::Dense<10>, pardl::ReLU>;
static_assert(Model::param_count == 28 * 28 * 10 + 10);

int main() {
    constexpr std::size_t n = Model::param_count;
    return static_cast<int>(n % 2);
}
