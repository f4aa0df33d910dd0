// W-MLP on Fashion-MNIST: 784-256-128-10 with ReLU, softmax cross-entropy, SGD or Adam.
// Built once per policy (mlp_serial, mlp_openmp, mlp_mpi, mlp_hybrid, mlp_tensor); PARDL_POLICY names the
// policy type, so the same source is the serial reference and its parallel versions.
#include "common/classifier.hpp"

#ifndef PARDL_POLICY
#define PARDL_POLICY Serial
#endif
#ifndef PARDL_POLICY_NAME
#define PARDL_POLICY_NAME "serial"
#endif

using Model = pardl::Sequential<pardl::Input<784>, pardl::Dense<256>, pardl::ReLU, pardl::Dense<128>,
                                pardl::ReLU, pardl::Dense<10>>;
using RunPolicy = pardl::PARDL_POLICY;

int main(int argc, char** argv) {
    pardl::examples::RunOptions opts;
    pardl::examples::CommandLine cli(
        std::string("Train the W-MLP (784-256-128-10) on Fashion-MNIST with the ") + PARDL_POLICY_NAME +
            " policy.",
        opts);
    return pardl::examples::run_example<RunPolicy>(argc, argv, cli, [&] {
        return pardl::examples::train_with_flags<Model, RunPolicy>(cli, "W-MLP 784-256-128-10");
    });
}
