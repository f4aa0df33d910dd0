// W-CNN on Fashion-MNIST: Conv(1->32, 3x3, pad 1)-ReLU-MaxPool 2 - Conv(32->64, 3x3, pad 1)-ReLU-
// MaxPool 2 - Flatten - Dense 256 - ReLU - Dense 10; --bn adds (synchronized) batch norm after each
// convolution. Built once per policy (cnn_serial, cnn_openmp, cnn_mpi, cnn_hybrid).
#include "common/classifier.hpp"

#ifndef PARDL_POLICY
#define PARDL_POLICY Serial
#endif
#ifndef PARDL_POLICY_NAME
#define PARDL_POLICY_NAME "serial"
#endif

namespace {
using namespace pardl;
using Cnn = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>, ReLU,
                       MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;
using CnnBn =
    Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, BatchNorm<>, ReLU, MaxPool2D<2>, Conv2D<64, 3, 1, 1>,
               BatchNorm<>, ReLU, MaxPool2D<2>, Flatten, Dense<256>, ReLU, Dense<10>>;
using RunPolicy = pardl::PARDL_POLICY;
} // namespace

int main(int argc, char** argv) {
    examples::RunOptions opts;
    examples::CommandLine cli(std::string("Train the W-CNN (two 3x3 conv blocks, dense 256) on Fashion-MNIST "
                                          "with the ") +
                                  PARDL_POLICY_NAME + " policy.",
                              opts);
    bool bn = false;
    cli.add_flag("--bn", bn, "add synchronized batch norm after each convolution");
    return examples::run_example<RunPolicy>(argc, argv, cli, [&] {
        if (bn) return examples::train_with_flags<CnnBn, RunPolicy>(cli, "W-CNN+BN");
        return examples::train_with_flags<Cnn, RunPolicy>(cli, "W-CNN");
    });
}
