// W-MLP on Fashion-MNIST: 784-256-128-10 with ReLU, softmax cross-entropy, SGD or Adam.
// Built once per policy (mlp_serial, mlp_openmp, mlp_mpi, mlp_hybrid); PARDL_POLICY names the
// policy type, so the same source is the serial reference and its parallel versions.
#include <pardl/pardl.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "common/app.hpp"

#ifndef PARDL_POLICY
#define PARDL_POLICY Serial
#endif
#ifndef PARDL_POLICY_NAME
#define PARDL_POLICY_NAME "serial"
#endif

namespace {

using namespace pardl;
using pardl::examples::RunOptions;

using Model = Sequential<Input<784>, Dense<256>, ReLU, Dense<128>, ReLU, Dense<10>>;
using RunPolicy = pardl::PARDL_POLICY;
using Env = RunPolicy::communicator::Environment;
constexpr const char* model_name = "W-MLP 784-256-128-10";

template <class Opt>
int train(const RunOptions& o, Opt optimizer, double lr) {
    const int rank = Env::world_rank();
    const int ranks = Env::world_size();

    // Every rank loads the data (each then takes its slice of every batch).
    const Dataset train_set = load_fashion_mnist(o.data, /*train=*/true, o.limit);
    const Dataset test_set = load_fashion_mnist(o.data, /*train=*/false);
    examples::maybe_inject_failure(o, rank);

    TrainerOptions topt;
    topt.batch = o.batch;
    topt.seed = o.seed;
    topt.threads = o.threads;
    topt.check_replicas = o.check_replicas;
    topt.progress = !o.quiet;
    Trainer<Model, SoftmaxCrossEntropy, Opt, RunPolicy> trainer(std::move(optimizer), topt);

    if (rank == 0) {
        char momentum[32] = "";
        if (o.optimizer == "sgd") std::snprintf(momentum, sizeof momentum, " momentum %g", o.momentum);
        std::printf("%s  policy %s  %d rank%s x %zu thread%s  batch %zu  %s lr %g%s  seed %llu\n", model_name,
                    RunPolicy::name().c_str(), ranks, ranks == 1 ? "" : "s", trainer.workers(),
                    trainer.workers() == 1 ? "" : "s", o.batch, o.optimizer.c_str(), lr, momentum,
                    static_cast<unsigned long long>(o.seed));
        std::printf("data %s: %zu training images, %zu test images\n", o.data.string().c_str(),
                    train_set.rows, test_set.rows);
        if (!o.quiet) std::printf("%s", describe<Model>().c_str());
        std::fflush(stdout);
    }

    const std::vector<EpochRecord> history = trainer.fit(train_set, &test_set, o.epochs);

    if (!o.save.empty()) trainer.save(o.save);
    if (rank == 0) {
        double seconds = 0;
        for (const EpochRecord& r : history) seconds += r.seconds;
        std::printf("final test accuracy %.4f  (test loss %.4f)  training %.2f s  checksum %016llx\n",
                    history.back().test_accuracy, history.back().test_loss, seconds,
                    static_cast<unsigned long long>(trainer.checksum()));
        if (!o.save.empty()) std::printf("checkpoint saved to %s\n", o.save.c_str());
        if (!o.json.empty()) {
            examples::write_run_record(o.json,
                                       examples::make_run_record(o, model_name, trainer, lr, train_set.rows,
                                                                 test_set.rows, history));
            std::printf("run record written to %s\n", o.json.c_str());
        }
        std::fflush(stdout);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{std::string("Train the W-MLP (784-256-128-10) on Fashion-MNIST with the ") +
                 PARDL_POLICY_NAME + " policy."};
    RunOptions opts;
    examples::add_run_flags(app, opts);
    return examples::run_example<RunPolicy>(argc, argv, app, [&]() -> int {
        const double lr = examples::effective_lr(app, opts);
        if (opts.optimizer == "adam") {
            Adam::Options a;
            a.lr = static_cast<float>(lr);
            return train(opts, Adam(a), lr);
        }
        SGD::Options s;
        s.lr = static_cast<float>(lr);
        s.momentum = static_cast<float>(opts.momentum);
        return train(opts, SGD(s), lr);
    });
}
