// The training program shared by the classification examples (mlp, cnn): load Fashion-MNIST on
// every rank, train with the chosen optimizer under the policy the binary was built for, print
// the epoch log and write the checkpoint and the --json run record on rank 0.
#pragma once

#include <pardl/pardl.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/app.hpp"

namespace pardl::examples {

template <class Model, class Policy, class Opt>
int train_classifier(const RunOptions& o, Opt optimizer, double lr, bool lr_from_flag,
                     const std::string& model_name) {
    using Env = typename Policy::communicator::Environment;
    const int rank = Env::world_rank();
    const int ranks = Env::world_size();

    // Rank 0 reads the checkpoint it resumes from and writes every output (checkpoints, the run
    // record, the joined timeline): only its node needs those files and folders. A failure there
    // ends the job (run_example).
    if (rank == 0) {
        require_resume_file(o);
        require_writable_outputs(o);
    }
    // Every rank loads the data (each then takes its slice of every batch).
    const Dataset train_set = load_fashion_mnist(o.data, /*train=*/true, o.limit);
    const Dataset test_set = load_fashion_mnist(o.data, /*train=*/false, o.test_limit);
    maybe_inject_failure(o, rank);
    // The trainer sizes its buffers for a whole batch: one larger than the data only costs memory.
    if (o.batch > train_set.rows)
        throw ConfigError("--batch " + std::to_string(o.batch) + " is larger than the training set (" +
                          std::to_string(train_set.rows) + (train_set.rows == 1 ? " image" : " images") +
                          "): use at most " + std::to_string(train_set.rows));

    // The trainer compares the ranks' training data (its "training data" setting, below); the test
    // set is no setting of its (evaluate checks only that the ranks' sizes agree), so ranks given
    // other test images, which would evaluate a mix of both sets, stop here, all together.
    if (ranks > 1) {
        const std::optional<std::string> differ =
            pardl::differing_across_ranks({{"test data", data_fingerprint(test_set)}},
                                          [](std::uint64_t v) { return Env::max_over_ranks(v); });
        if (!differ || !differ->empty())
            throw ConfigError(
                "the ranks were given different data: " + differ.value_or("not the same list of data sets") +
                "; every rank must read the same files");
    }

    TrainerOptions topt;
    topt.batch = o.batch;
    topt.seed = o.seed;
    topt.threads = o.threads;
    topt.check_replicas = o.check_replicas;
    topt.progress = !o.quiet;
    topt.flush_subnormals = !o.keep_subnormals;
    topt.clip_grad_norm = static_cast<float>(o.clip_grad_norm);
    topt.clip_grad_value = static_cast<float>(o.clip_grad_value);
    // Which images it trains on (--data, --limit): a resume from other data is named.
    topt.settings = {{"training data", data_fingerprint(train_set)}};
    // Epochs to steps: fit runs one step per batch, the last one maybe short.
    const std::uint64_t steps_per_epoch = BatchLoader::batches_per_epoch(train_set.rows, o.batch);
    topt.schedule = make_lr_schedule(parse_lr_schedule(o.lr_schedule), o.warmup_epochs,
                                     static_cast<float>(lr), steps_per_epoch);
    const bool scheduled = static_cast<bool>(topt.schedule);
    // The timeline needs the trainer's worker count, which the executor resolves: ask it first.
    std::unique_ptr<Timeline> timeline;
    if (!o.timeline.empty()) {
        timeline = std::make_unique<Timeline>(typename Policy::executor(o.threads).workers());
        topt.timeline = timeline.get();
    }
    // Under MPI the trainer's destructor is a collective (it frees a shared-memory window with the
    // other ranks). An exception on one rank alone (out of memory on one node, say) must not run
    // it: that rank would wait there for ranks still training, and they for it, for ever. With
    // several ranks a failure therefore leaves the trainer undestroyed, and run_example prints the
    // error and ends the whole job (MPI_Abort).
    auto owner =
        std::make_unique<Trainer<Model, SoftmaxCrossEntropy, Opt, Policy>>(std::move(optimizer), topt);
    auto& trainer = *owner;
    try {
        // --auto-resume: rank 0, which reads checkpoints, decides for every rank whether one is there.
        const bool resume_saved =
            o.auto_resume && Env::max_over_ranks(rank == 0 && std::filesystem::exists(o.save) ? 1 : 0) != 0;
        const std::string resume_from = resume_saved ? o.save : o.resume;
        if (!resume_from.empty()) {
            trainer.load(resume_from); // the parameters, the optimizer's state and rate, the counters
            // A schedule sets every step's rate from the step count, which the checkpoint restored.
            if (lr_from_flag && !scheduled) trainer.optimizer().set_learning_rate(static_cast<float>(lr));
            if (!scheduled) lr = trainer.optimizer().learning_rate();
        }

        if (rank == 0) {
            char optimizer_options[64] = ""; // momentum (SGD's), weight decay
            if (o.optimizer == "sgd")
                std::snprintf(optimizer_options, sizeof optimizer_options, " momentum %g%s", o.momentum,
                              o.nesterov ? " nesterov" : "");
            if (o.weight_decay > 0) {
                const std::size_t used = std::strlen(optimizer_options);
                std::snprintf(optimizer_options + used, sizeof optimizer_options - used, " weight-decay %g",
                              o.weight_decay);
            }
            char workers[64];
            if (trainer.threads() == trainer.workers())
                std::snprintf(workers, sizeof workers, "%zu thread%s", trainer.threads(),
                              trainer.threads() == 1 ? "" : "s");
            else
                std::snprintf(workers, sizeof workers, "%zu workers taken in turn", trainer.workers());
            std::string lr_moves;
            if (scheduled) {
                lr_moves = " " + o.lr_schedule;
                if (o.warmup_epochs > 0)
                    lr_moves += " after " + std::to_string(o.warmup_epochs) + " warm-up epoch" +
                                (o.warmup_epochs == 1 ? "" : "s");
            }
            char clip[48] = "";
            if (topt.clip_grad_norm > 0)
                std::snprintf(clip, sizeof clip, "  clip-grad-norm %g",
                              static_cast<double>(topt.clip_grad_norm));
            else if (topt.clip_grad_value > 0)
                std::snprintf(clip, sizeof clip, "  clip-grad-value %g",
                              static_cast<double>(topt.clip_grad_value));
            std::printf("%s  policy %s  %d rank%s x %s  batch %zu  %s lr %g%s%s%s  seed %llu\n",
                        model_name.c_str(), Policy::name().c_str(), ranks, ranks == 1 ? "" : "s", workers,
                        o.batch, o.optimizer.c_str(), lr, lr_moves.c_str(), optimizer_options, clip,
                        static_cast<unsigned long long>(o.seed));
            std::printf("data %s: %zu training images, %zu test images\n", o.data.string().c_str(),
                        train_set.rows, test_set.rows);
            if (!resume_from.empty())
                std::printf("resumed from %s after epoch %zu (step %llu)\n", resume_from.c_str(),
                            trainer.epochs_trained(), static_cast<unsigned long long>(trainer.steps_done()));
            if (!o.quiet) std::printf("%s", describe<Model>().c_str());
            std::fflush(stdout);
        }

        // --total-epochs counts the checkpoint's epochs too: what is still to go, maybe nothing.
        const std::size_t done = trainer.epochs_trained();
        const std::size_t epochs =
            o.total_epochs == 0 ? o.epochs : o.total_epochs - std::min(done, o.total_epochs);
        if (epochs == 0) {
            if (rank == 0) {
                std::printf("nothing to train: %zu epochs done, --total-epochs %zu  checksum %016llx\n", done,
                            o.total_epochs, static_cast<unsigned long long>(trainer.checksum()));
                if (!o.json.empty() || !o.timeline.empty())
                    std::printf("no run record or timeline written: they describe the epochs a run trains\n");
            }
            return 0;
        }
        const std::size_t last_epoch = done + epochs;
        const auto save = [&] { // a collective: every rank calls it
            trainer.save(o.save);
            if (rank == 0) {
                std::printf("checkpoint saved to %s after epoch %zu\n", o.save.c_str(),
                            trainer.epochs_trained());
                std::fflush(stdout);
            }
        };
        // --save-every: the checkpoint after every N epochs (numbered as the log numbers them, so a
        // resumed run keeps the rhythm), written as the final one is; fit calls this on every rank
        // at an epoch's end, where a resume goes on exactly. The last epoch's save follows fit.
        const auto after_epoch = [&](const EpochRecord& record) {
            if (o.save_every > 0 && record.epoch % o.save_every == 0 && record.epoch < last_epoch) save();
            maybe_inject_failure(o, rank, record.epoch);
        };
        const std::vector<EpochRecord> history = trainer.fit(train_set, &test_set, epochs, after_epoch);

        if (!o.save.empty()) save();
        if (timeline)
            write_timeline(*timeline, trainer.communicator(), o.timeline); // a collective; rank 0 writes
        if (rank == 0) {
            double seconds = 0;
            for (const EpochRecord& r : history) seconds += r.seconds;
            std::printf("final test accuracy %.4f  (test loss %.4f)  training %.2f s  checksum %016llx\n",
                        history.back().test_accuracy, history.back().test_loss, seconds,
                        static_cast<unsigned long long>(trainer.checksum()));
            if (timeline) std::printf("timeline written to %s\n", o.timeline.c_str());
            if (!o.json.empty()) {
                write_run_record(o.json, o, run_info(model_name, trainer, lr, train_set.rows, test_set.rows),
                                 history);
                std::printf("run record written to %s\n", o.json.c_str());
            }
            std::fflush(stdout);
        }
        return 0;
    } catch (...) {
        if (ranks > 1) static_cast<void>(owner.release()); // left to the job's end, on purpose
        throw;
    }
}

/// The optimizers the flags choose among, behind one type: a program compiles one trainer for
/// both (OptimizerChoice), not one for each (1-3 s less per example program on the Zen 3 guest of
/// docs/performance_zen3_avx2.md).
using FlagOptimizer = OptimizerChoice<SGD, Adam>;

/// Builds the optimizer the flags ask for (SGD with momentum, maybe Nesterov's, or Adam; either
/// with an L2 weight decay) and trains Model.
template <class Model, class Policy>
int train_with_flags(const CommandLine& cli, const std::string& model_name) {
    const RunOptions& opts = cli.options();
    const double lr = effective_lr(cli); // --lr is a float's (positive_float), else the optimizer's default
    const auto optimizer = [&]() -> FlagOptimizer {
        if (opts.optimizer == "adam") {
            Adam::Options a;
            a.lr = static_cast<float>(lr);
            a.weight_decay = static_cast<float>(opts.weight_decay);
            return Adam(a);
        }
        SGD::Options s;
        s.lr = static_cast<float>(lr);
        s.momentum = static_cast<float>(opts.momentum);
        s.nesterov = opts.nesterov;
        s.weight_decay = static_cast<float>(opts.weight_decay);
        return SGD(s);
    };
    return train_classifier<Model, Policy>(opts, optimizer(), lr, cli.given("--lr"), model_name);
}

} // namespace pardl::examples
