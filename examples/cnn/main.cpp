// W-CNN on Fashion-MNIST: Conv(1->32, 3x3, pad 1)-ReLU-MaxPool 2 - Conv(32->64, 3x3, pad 1)-ReLU-
// MaxPool 2 - Flatten - Dense 256 - ReLU - Dense 10; --bn adds (synchronized) batch norm after each
// convolution. Built once per policy (cnn_serial, cnn_openmp, cnn_mpi, cnn_hybrid, cnn_tensor).
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

/// W-CNN+BN under Policy: a tensor-parallel team cannot share batch norm's statistics by rows
/// (Sequential::team_splittable), so the tensor build says so instead of training.
template <class Policy>
int train_with_batch_norm(examples::CommandLine& cli) {
    if constexpr (CnnBn::team_splittable || !splits_layers_v<typename Policy::executor>)
        return examples::train_with_flags<CnnBn, Policy>(cli, "W-CNN+BN");
    else
        throw ConfigError(PARDL_POLICY_NAME
                          ": --bn needs a data-parallel policy (serial, openmp, mpi or hybrid): "
                          "a tensor-parallel team cannot share batch norm's statistics");
}
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
        if (bn) return train_with_batch_norm<RunPolicy>(cli);
        return examples::train_with_flags<Cnn, RunPolicy>(cli, "W-CNN");
    });
}
