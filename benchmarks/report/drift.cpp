// Parameter drift between runs that differ only in the order of floating-point sums, step by
// step, on W-MLP with the reference configuration (SGD lr 0.01, momentum 0.9, batch 64, seed 42):
//   serial1  Serial, one worker (the baseline)
//   serial2  Serial, two workers taken in turn (the sums of a 2-worker run, on one thread)
//   openmp2  OpenMP, two threads
//   tensor2  TensorParallel, two threads (each output summed from two partial sums over inputs)
//   nudged   serial1 with one weight moved by one ulp before the first step
// Prints CSV: step, epoch, and max |a - b| / max |b| over all parameters for each pair. It shows
// that (1) a 2-worker policy equals Serial with the same split exactly, and (2) Serial with one
// and two workers drift apart exactly as far as a one-ulp perturbation of Serial itself does: the
// drift is the training dynamics amplifying rounding, not an error of the parallel code; (3)
// tensor parallelism, whose sums split the other way (over a layer's inputs, not the batch),
// drifts no further than that either.
#include "../workloads.hpp"

#include <pardl/policies/openmp.hpp>
#include <pardl/policies/tensor_parallel.hpp>
#include <pardl/testing/equivalence.hpp>

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>

namespace {

using namespace pardl;

template <class Policy>
using MlpTrainer = Trainer<bench::WMlp, SoftmaxCrossEntropy, SGD, Policy>;

TrainerOptions options(std::size_t workers) {
    TrainerOptions o;
    o.batch = 64;
    o.seed = 42;
    o.threads = workers;
    o.log = false;
    o.progress = false;
    return o;
}

SGD sgd() {
    return SGD({.lr = 0.01f, .momentum = 0.9f});
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Parameter drift between Serial (1 and 2 workers), OpenMP (2 threads), TensorParallel "
                 "(2 threads) and a one-ulp perturbation of Serial, on W-MLP"};
    std::string data_dir = "/usr/share/datasets/fashion-mnist";
    std::size_t epochs = 5, every = 10;
    app.add_option("--data", data_dir, "Fashion-MNIST directory")->capture_default_str();
    app.add_option("--epochs", epochs, "Epochs")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--every", every, "Print every K steps")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    try {
        const Dataset train = load_fashion_mnist(data_dir, true);
        MlpTrainer<Serial> serial1(sgd(), options(1)), serial2(sgd(), options(2)), nudged(sgd(), options(1));
        MlpTrainer<OpenMP> openmp2(sgd(), options(2));
        MlpTrainer<TensorParallel> tensor2(sgd(), options(2));
        // One ulp on the first weight of the first layer: the smallest change a float allows.
        float& w = nudged.parameters()[0];
        w = std::nextafter(w, INFINITY);

        std::printf("step,epoch,serial2_vs_serial1,openmp2_vs_serial1,openmp2_vs_serial2,nudged_vs_serial1,"
                    "tensor2_vs_serial1\n");
        BatchLoader loader(train, 64, 42, /*shuffle=*/true, /*drop_last=*/false);
        std::size_t step = 0;
        for (std::size_t e = 1; e <= epochs; ++e) {
            loader.start_epoch(e);
            for (std::size_t b = 0; b < loader.batches_per_epoch(); ++b) {
                const auto idx = loader.batch_indices(b);
                serial1.step(train, idx);
                serial2.step(train, idx);
                openmp2.step(train, idx);
                tensor2.step(train, idx);
                nudged.step(train, idx);
                if (++step % every != 0 && b + 1 != loader.batches_per_epoch()) continue;
                const auto d = [](auto& a, auto& ref) {
                    return testing::max_relative_difference(a.parameters(), ref.parameters());
                };
                std::printf("%zu,%zu,%.6g,%.6g,%.6g,%.6g,%.6g\n", step, e, d(serial2, serial1),
                            d(openmp2, serial1), d(openmp2, serial2), d(nudged, serial1),
                            d(tensor2, serial1));
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
