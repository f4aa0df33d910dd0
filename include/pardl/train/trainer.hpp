// Trainer<Model, Loss, Optimizer, Policy>: the training step, epochs, evaluation and checkpoints.
// The step is the serial step whatever the policy: the global batch is split over ranks, then
// threads (balanced_range); every worker sums its rows' gradients; the executor adds the
// workers' buffers in a fixed order; one allreduce carries gradients, loss sum, sample count and
// correct count; the gradient is scaled once by 1/N_global; every rank applies the same update.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "pardl/comm/agreement.hpp"
#include "pardl/comm/byte_broadcast.hpp"
#include "pardl/core/errors.hpp"
#include "pardl/core/subnormals.hpp"
#include "pardl/data/dataset.hpp"
#include "pardl/data/loader.hpp"
#include "pardl/execution/partition.hpp"
#include "pardl/losses/loss.hpp"
#include "pardl/metrics/progress.hpp"
#include "pardl/metrics/timeline.hpp"
#include "pardl/metrics/timer.hpp"
#include "pardl/optimizers/optimizer.hpp"
#include "pardl/optimizers/schedule.hpp"
#include "pardl/policies/policy.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/vector_loop.hpp"
#include "pardl/train/checkpoint.hpp"

namespace pardl {

/// Floats a rank's step reduces after the gradient, in the same buffer and the same collective:
/// the loss sum, the sample count, the correct count, and the learning rate (every rank's must
/// be the same). (Benchmarks of the gradient exchange size their messages with it.)
inline constexpr std::size_t step_tail_floats = 4;

/// Result of one training step (global figures, identical on every rank).
struct StepResult {
    double loss = 0;         ///< mean loss over the global batch
    std::size_t samples = 0; ///< rows in the global batch
    std::size_t correct = 0; ///< rows whose prediction matched the label
    /// With TrainerOptions::clip_grad_norm: the L2 norm of the batch's mean gradient over all
    /// parameters, before clipping (what PyTorch's clip_grad_norm_ returns). NaN without it (not
    /// computed).
    double grad_norm = std::numeric_limits<double>::quiet_NaN();
    bool clipped = false; ///< the update was scaled down: grad_norm exceeded clip_grad_norm
};

/// Mean loss and accuracy over a dataset (every sample counted once across ranks).
struct Evaluation {
    double loss = 0;
    double accuracy = 0; ///< rows whose argmax is their label: meaningful for classification data only
    std::size_t samples = 0;
};

/// One epoch of fit().
struct EpochRecord {
    std::size_t epoch = 0;
    double train_loss = 0;
    double train_accuracy = 0;
    double test_loss = 0;
    double test_accuracy = 0;
    double seconds = 0; ///< training time of the epoch (evaluation excluded)
    double samples_per_second = 0;
    float learning_rate = 0; ///< the optimizer's rate at the epoch's end (its last step's, with a schedule)
    std::size_t clipped_steps = 0; ///< steps whose gradient TrainerOptions::clip_grad_norm scaled down
    PhaseTimes phases{};           ///< where this rank's first worker spent the epoch
};

struct TrainerOptions {
    std::size_t batch = 64;         ///< global batch size (over all ranks and threads)
    std::uint64_t seed = 42;        ///< initialisation, shuffling and dropout keys
    std::size_t threads = 0;        ///< workers per rank; 0 = the executor's default
    std::size_t check_replicas = 0; ///< compare parameter checksums across ranks every K steps (0 = never)
    bool log = true;                ///< one line per epoch on rank 0
    bool progress = true;           ///< live progress line when stdout is a terminal (rank 0)
    std::FILE* out = stdout;
    /// When set, every step records its phases here (each worker its own data/forward/backward;
    /// the master reduce_workers, allreduce, update and "step"). Needs >= workers() worker lanes;
    /// the timeline must outlive the trainer's steps. Null: nothing is recorded.
    Timeline* timeline = nullptr;
    /// Steps and evaluations flush subnormal floats to zero on every thread that computes them
    /// (core/subnormals.hpp says why); the calling thread's mode is restored afterwards. False:
    /// they run in the calling thread's mode, whatever it is.
    bool flush_subnormals = true;
    /// When set, the optimizer's learning rate before each step is schedule(steps_done()) (see
    /// optimizers/schedule.hpp: schedule::cosine, step_decay, multi_step, warmup), on every rank alike; a
    /// resumed run goes on along the same curve. Empty: the rate stays as set.
    Schedule schedule{};
    /// When > 0, gradient clipping by global norm (PyTorch's clip_grad_norm_ before each step):
    /// where the L2 norm of the batch's mean gradient, over all parameters, exceeds it, the update
    /// uses that gradient scaled by clip_grad_norm / (norm + 1e-6). The norm needs the sum complete
    /// before any update: one process updates in a second pass over the sum; with several (and
    /// in a tensor-parallel team), every rank reduces the whole gradient and updates every
    /// parameter (as DDP does) instead of sharing the update. 0: no clipping, and the norm is not
    /// computed.
    float clip_grad_norm = 0;
    /// When > 0, gradient clipping by value (PyTorch's clip_grad_value_ before each step): every
    /// element of the batch's mean gradient is clamped to [-clip_grad_value, clip_grad_value]
    /// before the update (NaN stays NaN). Elementwise, so every policy does it inside its update:
    /// within the optimizer's own for SGD, Adam and AdamW (ClampsGradient), else in one more pass
    /// over each block while it is in L1. Not together with clip_grad_norm. 0: off.
    float clip_grad_value = 0;
    /// The program's own settings that a resumed run must share to go on exactly, such as which
    /// data it trains on, as (name, value) text: recorded with run_settings, after the trainer's
    /// and the optimizer's, and compared by load as they are. The same on every rank (load also
    /// compares the ranks' settings); printable, at most 255 bytes each, names distinct from the
    /// others, and at most 64 settings with the trainer's and the optimizer's (about a dozen):
    /// the trainer refuses them otherwise.
    std::vector<std::pair<std::string, std::string>> settings{};
};

template <class Model, Loss LossT, Optimizer Opt, PolicyType P = Serial>
class Trainer {
    // A policy whose component this build lacks is a stand-in (policies/unlinked.hpp).
    static_assert(
        !requires { requires P::executor::missing_openmp; },
        "pardl::Trainer: OpenMP, TensorParallel and Hybrid need OpenMP, which this build does "
        "not have: link pardl::openmp (CMake), or compile and link with -fopenmp");
    static_assert(
        !requires { requires P::communicator::missing_mpi; },
        "pardl::Trainer: MPI and Hybrid need MPI, which this build does not have: link "
        "pardl::mpi (CMake; Hybrid also pardl::openmp), or compile with -DPARDL_HAS_MPI=1 and "
        "MPICH's flags (pkg-config mpich)");
    /// A model whose chain already failed (Sequential's message) gets no second error here.
    static constexpr bool model_valid = [] {
        if constexpr (requires { Model::valid; })
            return Model::valid;
        else
            return true;
    }();
    static_assert(
        !model_valid || LossT::template accepts<typename Model::output_shape>,
        "pardl::Trainer: this loss does not accept the model's output shape (SoftmaxCrossEntropy needs a "
        "flat output with at least 2 classes)");

    /// Whether the policy runs each step as a tensor-parallel team (TensorParallel).
    static constexpr bool team_step = splits_layers_v<typename P::executor>;
    static_assert(
        !team_step || Model::team_splittable,
        "pardl::Trainer: TensorParallel splits every layer with parameters by its inputs (each "
        "thread owns a block of rows of W), and only Dense can be split so; convolutions only in the "
        "row-wise prefix before the first Dense (its threads share that by rows), and no layer with "
        "state (batch norm): train this model with OpenMP, MPI or Hybrid (data parallelism)");

public:
    using model_type = Model;
    using policy_type = P;
    using Executor = typename P::executor;
    using Comm = typename P::communicator;
    static constexpr std::size_t param_count = Model::param_count;

    /// Initialises the parameters from options.seed on rank 0 and broadcasts them. A collective:
    /// ranks given different settings (require_same_settings_on_every_rank) stop here together.
    Trainer(Opt optimizer, TrainerOptions options, Comm comm = Comm{})
        : opt_(std::move(optimizer)), options_(options),
          schedule_setting_(schedule_fingerprint(options_.schedule)), comm_(std::move(comm)),
          exec_(options.threads), params_(comm_.allocate(param_count)), state_(Model::state_count),
          rank_buffer_(comm_.allocate(param_count + step_tail_floats)) {
        // Every rank leaves the constructor together, returning or throwing. A rank that threw alone
        // (out of memory on one node, options that differ on one rank) would unwind into freeing
        // the shared windows above, a collective, while the others waited in the broadcast below.
        const std::size_t workers = exec_.workers();
        std::exception_ptr failure;
        try {
            PARDL_REQUIRE(options_.batch >= 1, ConfigError, "batch size must be >= 1");
            PARDL_REQUIRE(options_.out != nullptr || !options_.log, ConfigError,
                          "TrainerOptions::out is null while log is on: give a stream (stdout by default), ",
                          "or set log = false");
            // Every buffer is sized by the batch times a layer's width: a batch whose activations
            // alone would pass 2^46 bytes (64 TiB) is refused before those products wrap around.
            constexpr std::size_t row_floats = std::accumulate(
                Model::output_sizes.begin(), Model::output_sizes.end(), Model::input_shape::size);
            PARDL_REQUIRE(options_.batch <= (std::size_t{1} << 44) / row_floats, ConfigError, "batch size ",
                          options_.batch, " is too large: its activations alone (", row_floats,
                          " floats a row) would not fit in any machine's memory");
            PARDL_REQUIRE(std::isfinite(options_.clip_grad_norm) && options_.clip_grad_norm >= 0, ConfigError,
                          "clip_grad_norm is ", options_.clip_grad_norm,
                          ": the largest gradient norm must be a finite number > 0 (0: no clipping)");
            PARDL_REQUIRE(std::isfinite(options_.clip_grad_value) && options_.clip_grad_value >= 0,
                          ConfigError, "clip_grad_value is ", options_.clip_grad_value,
                          ": the largest gradient element must be a finite number > 0 (0: no clipping)");
            PARDL_REQUIRE(!(clipping() && clamping()), ConfigError, "clip_grad_norm (",
                          options_.clip_grad_norm, ") and clip_grad_value (", options_.clip_grad_value,
                          ") are both set: clip by one of them (the order of the two would change the step)");
            // What save will write: found now, not at the first save hours into the run.
            const std::string settings_problem = checkpoint_settings_problem(run_settings());
            PARDL_REQUIRE(settings_problem.empty(), ConfigError,
                          "run_settings (the trainer's, the optimizer's and TrainerOptions::settings) ",
                          "cannot go into a checkpoint: ", settings_problem);
            const std::size_t ranks = static_cast<std::size_t>(comm_.size());
            PARDL_REQUIRE(!options_.timeline || options_.timeline->workers() >= workers, ConfigError,
                          "the timeline has ", options_.timeline ? options_.timeline->workers() : 0,
                          " worker lanes but the trainer runs ", workers, " workers");
            rank_rows_ = max_part_size(options_.batch, ranks);
            const std::size_t worker_rows = std::max<std::size_t>(1, max_part_size(rank_rows_, workers));
            workers_.reserve(workers);
            if constexpr (team_step) {
                // One workspace for the whole team and the rank's whole batch, in a single block (the
                // members split rows of it, see Sequential::forward_team); the others evaluate only.
                // With a data-parallel prefix (Model::team_prefix) member w > 0 runs its rows of it in
                // worker w's workspace, into worker w's gradients, and member 0 in the team's
                // workspace, block by block as usual.
                workers_.emplace_back(std::max<std::size_t>(1, rank_rows_), 0, 0);
                if constexpr (Model::team_prefix == 0) workers_[0].ws.set_block_rows(0);
                workers_[0].ws.set_team(workers);
                for (std::size_t w = 1; w < workers; ++w)
                    workers_.emplace_back(worker_rows, Model::team_prefix > 0 ? param_count : 0, 0);
                for (Worker& wk : workers_) team_workspaces_.push_back(&wk.ws);
            } else {
                // Threads of their own, and an update that keeps their copies current (see
                // Worker::param_copy).
                const bool copies = workers > 1 && exec_.threads() > 1 && fuses_update();
                for (std::size_t w = 0; w < workers; ++w)
                    workers_.emplace_back(worker_rows, w == 0 ? 0 : param_count, copies ? param_count : 0);
            }
            opt_.reset(param_count);
            if (clipping()) clip_squares_.assign((param_count + reduction_block - 1) / reduction_block, 0.0);
        } catch (...) {
            failure = std::current_exception();
        }
        if (comm_.max(failure ? 1 : 0) != 0) {
            if (failure) std::rethrow_exception(failure);
            throw CommError("another rank could not build its trainer (that rank's error says why)");
        }
        require_same_settings_on_every_rank();
        grad_views_.reserve(workers);
        grad_views_.push_back(rank_grads());
        for (std::size_t w = 1; w < workers; ++w) grad_views_.push_back(workers_[w].grads.span());
        if (comm_.rank() == 0) Model::initialize(params_.span(), state_.span(), options_.seed);
        comm_.broadcast(params_.span(), 0);
        if (!state_.empty()) comm_.broadcast(state_.span(), 0);
        exec_.set_rank_reduce([this](std::span<double> v) { comm_.allreduce_sum(v); });
    }

    // The executor and the communicator hold callbacks into this object: it stays where it is.
    // Under MPI its destruction is a collective (its shared-memory windows, parameters and gradients): a
    // rank that fails alone must end the job (MpiEnvironment::abort) before destroying it, or it
    // waits there for ranks that wait for it in the next step (docs/architecture.md).
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // ---- accessors -------------------------------------------------------------------------
    /// Writes through the span reach the next step; after a step, call this again before
    /// writing (the workers' parameter copies are refreshed from it when it is called).
    std::span<float> parameters() {
        param_copies_current_ = false;
        return params_.span();
    }
    std::span<const float> parameters() const { return params_.span(); }
    std::span<float> state() { return state_.span(); }
    Opt& optimizer() { return opt_; }
    Comm& communicator() { return comm_; }
    const TrainerOptions& options() const { return options_; }
    std::size_t workers() const { return exec_.workers(); }
    std::size_t threads() const { return exec_.threads(); }
    int rank() const { return comm_.rank(); }
    int ranks() const { return comm_.size(); }
    std::uint64_t steps_done() const { return step_; }
    /// The highest epoch number trained so far (fit and train_epoch); fit numbers on from it.
    std::size_t epochs_trained() const { return epochs_trained_; }
    const PhaseTimes& phase_times() const { return phases_; }
    void reset_phase_times() { phases_ = {}; }

    /// A bit-exact fingerprint of the parameters (FNV-1a over their bytes, in buffer order,
    /// without the padding between layers' blocks).
    std::uint64_t checksum() const {
        detail::Fnv1a h;
        Model::for_each_param_block([&](std::size_t first, std::size_t count) {
            h.add(params_.data() + first, count * sizeof(float));
        });
        return h.value;
    }

    // ---- training --------------------------------------------------------------------------

    /// One step on the global batch whose dataset rows are `global_indices` (the same list on
    /// every rank; each rank takes its balanced slice).
    StepResult step(const Dataset& data, std::span<const std::size_t> global_indices) {
        const std::size_t global_rows = global_indices.size();
        PARDL_REQUIRE(global_rows >= 1, ConfigError, "step: the batch is empty (no row indices)");
        PARDL_REQUIRE(global_rows <= options_.batch, ConfigError, "step: batch of ", global_rows,
                      " rows exceeds the configured batch size ", options_.batch);
        require_fits(data, "dataset", /*labels_too=*/false);
        // The batch's rows, checked on every rank before any work (the list is the same on every
        // rank, so all stop alike): an index past the data, or a label the loss would read out of
        // bounds (fit, train_epoch and evaluate check every label of the set once; step its own).
        for (const std::size_t i : global_indices) {
            PARDL_REQUIRE(i < data.rows, ConfigError, "step: sample index ", i, " out of range (", data.rows,
                          " rows)");
            if constexpr (requires { requires LossT::reads_labels; })
                PARDL_REQUIRE(data.labels[i] >= 0 && static_cast<std::size_t>(data.labels[i]) < data.classes,
                              DataError, "step: dataset row ", i, " has label ", data.labels[i],
                              ", outside [0, ", data.classes, ")");
        }
        const ScopedSubnormalMode fp_mode(subnormal_mode());
        const Range mine = balanced_range(global_rows, static_cast<std::size_t>(comm_.rank()),
                                          static_cast<std::size_t>(comm_.size()));
        const auto my_indices = global_indices.subspan(mine.begin, mine.size());
        const auto t0 = Clock::now();
        Clock::time_point worker0_done = t0;
        Timeline* const timeline = options_.timeline;
        float* g = rank_buffer_.data();
        float* p = params_.data();
        const bool fused_update = fuses_update();
        // Scaled once by 1/N_global (N is the global batch: every rank knows it).
        const float scale = 1.0f / static_cast<float>(std::max<std::size_t>(1, global_rows));
        // A schedule that gives no usable rate stops the step before anything changes. With several
        // ranks, one rank's failure must not leave the others waiting in the allreduce: the step
        // runs on (at the previous rate), the rate it reduces is NaN, and every rank stops after.
        std::string schedule_failure;
        if (options_.schedule) {
            try {
                const float scheduled = options_.schedule(step_);
                PARDL_REQUIRE(std::isfinite(scheduled) && scheduled >= 0.0f, ConfigError,
                              "the learning-rate schedule gave ", scheduled, " for step ", step_,
                              ": a rate must be a number >= 0");
                opt_.set_learning_rate(scheduled);
            } catch (const std::exception& e) {
                if (comm_.size() == 1) throw;
                schedule_failure = e.what();
            }
        }
        const float rate = opt_.learning_rate();
        opt_.begin_step();
        // Whether the workers' parameter copies are current where they updated (see
        // Worker::param_copy); false until this step has succeeded.
        const bool copies_current = std::exchange(param_copies_current_, false);
        // Backward overwrites the gradient buffers (overwrite_grads below), so nothing clears
        // them after the sum and the update, and the layers need not read zeros to add to them.
        // Updates parameters r from their summed gradient times `by` (grad[0] is parameter
        // r.begin's). An optimizer that ScalesGradient multiplies as it reads, and clamps as
        // well (clipping by value) if it ClampsGradient (SGD, Adam, AdamW); for another the
        // gradient is scaled (and clamped) in place first, block by block, so that the update
        // reads it from L1 (a tensor-parallel member passes all it owns of a layer at once:
        // W-MLP's first layer, 100k floats); an optimizer that only ScalesGradient then takes 1,
        // which keeps the bits of a gradient the clamp leaves alone (its scaling rounds as a
        // separate pass). The parameters updated are those at `params`: p, or a worker's copy.
        const float clamp_limit = options_.clip_grad_value;
        auto scale_and_update = [&](Range r, float by, float* grad, float* params) {
            if constexpr (ScalesGradient<Opt>) {
                if (clamp_limit == 0) {
                    opt_.update({params + r.begin, r.size()}, {grad, r.size()}, r.begin, by);
                    return;
                }
                if constexpr (ClampsGradient<Opt>) {
                    opt_.update({params + r.begin, r.size()}, {grad, r.size()}, r.begin, by, clamp_limit);
                    return;
                }
            }
            const simd::FloatVector factor = simd::broadcast(by), hi = simd::broadcast(clamp_limit),
                                    lo = simd::broadcast(-clamp_limit);
            for (std::size_t b = 0; b < r.size(); b += reduction_block) {
                const std::size_t n = std::min(r.size() - b, reduction_block);
                if (clamp_limit > 0)
                    simd::for_each_vector(
                        n, [&](simd::FloatVector& gi) { gi = simd::clamp(gi * factor, lo, hi); }, // NaN kept
                        grad + b);
                else
                    simd::for_each_vector(
                        n, [&](simd::FloatVector& gi) { gi *= factor; }, grad + b);
                if constexpr (ScalesGradient<Opt>)
                    opt_.update({params + r.begin + b, n}, {grad + b, n}, r.begin + b, 1.0f);
                else
                    opt_.update({params + r.begin + b, n}, {grad + b, n}, r.begin + b);
            }
        };
        // The fused update of worker w's chunk r, from its gradient sum `sums` (sums[0] is r.begin's).
        auto update_share = [&](std::size_t w, Range r, float by, float* sums) {
            Worker& wk = workers_[w];
            if (wk.param_copy.empty()) {
                scale_and_update(r, by, sums, p);
                return;
            }
            // The worker updates its own copy (current: this step's forward refreshed it), where
            // the next step's refresh skips the range (the executor gives a worker one contiguous
            // range, in order), and then copies the results to the shared parameters. Updating the
            // shared ones in place and copying them here was slower: the other workers read those
            // lines in their refresh, so each store of the update waited for their copies to be
            // taken back, and the update with it (2-thread W-MLP 0.39 -> 0.31 s per epoch on the
            // AMD EPYC (Zen 5) guest of docs/performance.md).
            float* const copy = wk.param_copy.data();
            scale_and_update(r, by, sums, copy);
            std::copy(copy + r.begin, copy + r.end, p + r.begin);
            assert(wk.updated.empty() || wk.updated.end == r.begin);
            wk.updated = wk.updated.empty() ? r : Range{wk.updated.begin, r.end};
        };
        auto work = [&](std::size_t w, Range r) {
            Worker& wk = workers_[w];
            const std::span<float> grads = grad_views_[w];
            // Workers with an empty share still run (on 0 rows): layers that synchronise
            // statistics across workers need every worker at every collective.
            const auto tw = Clock::now();
            const std::size_t n = r.size();
            Matrix x{wk.x.data(), n, data.cols};
            Matrix t = data.has_targets() ? Matrix{wk.targets.data(), n, data.target_cols} : Matrix{};
            BatchLoader::gather_rows(data, my_indices.subspan(r.begin, n), x, {wk.labels.data(), n}, t);
            const auto t_data = Clock::now();
            const StepContext ctx{.training = true,
                                  .seed = options_.seed,
                                  .step = step_,
                                  .first_row = mine.begin + r.begin,
                                  .global_rows = global_rows,
                                  .reducer = reducer(w),
                                  .updates_state = w == 0,
                                  .overwrite_grads = true};
            std::span<const float> params = params_.span();
            if (!wk.param_copy.empty()) {
                refresh_param_copy(wk, copies_current);
                params = wk.param_copy.span();
            }
            const ConstMatrix out = Model::forward(params, state_.span(), x, wk.ws, ctx);
            const Targets targets{{wk.labels.data(), n}, t};
            wk.loss = LossT::forward_backward(out, targets, wk.ws.output_gradient());
            wk.correct = LossT::correct(out, targets);
            const auto t_fwd = Clock::now();
            Model::backward(params, grads, state_.span(), x, wk.ws, ctx);
            if (w == 0 || timeline) record_worker_phases(w, {tw, t_data, t_fwd, Clock::now()}, worker0_done);
        };
        // The tensor-parallel step: the team computes the rank's batch together, every member
        // its share of each layer, and writes the gradients of the parameters it owns straight
        // into the rank buffer; with one process each member then updates what it owns (not when
        // clipping by norm, whose update follows the step: see below).
        auto team_work = [&](auto& team) {
            Worker& wk = workers_[0];
            const std::size_t member = team.index(), n = mine.size();
            const auto tw = Clock::now();
            Matrix x{wk.x.data(), n, data.cols};
            Matrix t = data.has_targets() ? Matrix{wk.targets.data(), n, data.target_cols} : Matrix{};
            if constexpr (Model::template team_by_columns<0>) {
                // Each member gathers the columns its share of the first layer reads, member 0 the
                // labels: no member reads what another gathered.
                const bool labels = member == 0;
                team.run([&] {
                    BatchLoader::gather_rows(
                        data, my_indices, x, labels ? wk.labels.span().first(n) : std::span<std::int32_t>{},
                        labels ? t : Matrix{}, line_share(data.cols, member, team.size()));
                });
            } else {
                const Range r = balanced_range(n, member, team.size());
                team.phase([&] {
                    BatchLoader::gather_rows(data, my_indices.subspan(r.begin, r.size()),
                                             x.row_block(r.begin, r.size()),
                                             {wk.labels.data() + r.begin, r.size()},
                                             t.empty() ? t : t.row_block(r.begin, r.size()));
                });
            }
            const auto t_data = Clock::now();
            const StepContext ctx{.training = true,
                                  .seed = options_.seed,
                                  .step = step_,
                                  .first_row = mine.begin,
                                  .global_rows = global_rows,
                                  .reducer = nullptr,
                                  .updates_state = true,
                                  .overwrite_grads = true};
            const typename Model::TeamPrefix prefix{team_workspaces_, grad_views_};
            const ConstMatrix out =
                Model::forward_team(params_.span(), state_.span(), x, wk.ws, ctx, team, prefix);
            team.phase([&] {
                if (member != 0) return;
                const Targets targets{{wk.labels.data(), n}, t};
                wk.loss = LossT::forward_backward(out, targets, wk.ws.output_gradient());
                wk.correct = LossT::correct(out, targets);
            });
            const auto t_fwd = Clock::now();
            Model::backward_team(params_.span(), rank_grads(), state_.span(), x, wk.ws, ctx, team, {},
                                 prefix);
            const auto t_bwd = Clock::now();
            if (fused_update)
                team.run([&] {
                    Model::for_each_owned(member, team.size(), [&](std::size_t first, std::size_t count) {
                        scale_and_update(Range{first, first + count}, scale, g + first, p);
                    });
                });
            record_worker_phases(member, {tw, t_data, t_fwd, t_bwd}, worker0_done);
        };
        const std::span<const std::span<float>> buffers(grad_views_);
        if constexpr (team_step)
            exec_.run_team(team_work);
        else if (fused_update && !clipping())
            exec_.run(mine.size(), work, buffers,
                      [&](std::size_t w, Range r, float* sums) { update_share(w, r, scale, sums); });
        else if (fused_update)
            // Clipping in one process: the update waits for the norm, so the finish keeps each
            // block's sum (in the summing worker's own buffer, which its next backward overwrites)
            // with the block's sum of squares, and once every block is summed each worker scales
            // and updates the blocks it summed, from its cache, keeping its parameter copy current.
            exec_.run(
                mine.size(), work, buffers,
                [&](std::size_t w, Range piece, float* sums) {
                    assert(piece.begin % reduction_block == 0 && piece.size() <= reduction_block);
                    float* const kept = grad_views_[w].data() + piece.begin;
                    if (sums != kept) std::copy(sums, sums + piece.size(), kept);
                    keep_block_squares(piece, kept);
                },
                [&](std::size_t w, Range r) {
                    const float by = clip_from_squares(scale).by;
                    for (std::size_t b = r.begin; b < r.end; b += reduction_block) {
                        const Range piece{b, std::min(r.end, b + reduction_block)};
                        update_share(w, piece, by, grad_views_[w].data() + piece.begin);
                    }
                });
        else
            exec_.run(mine.size(), work, buffers);
        param_copies_current_ = fused_update;
        const auto t_reduced = Clock::now();
        // With the fused update this phase holds the update too (reported as reduce_workers).
        phases_[Phase::reduce_workers] += seconds_between(worker0_done, t_reduced);
        if (timeline)
            timeline->record(timeline->master(), fused_update ? "reduce_workers+update" : "reduce_workers",
                             worker0_done, t_reduced);

        // The scalars ride in the same allreduce as the gradient (one message per step).
        double loss = 0, correct = 0;
        // A team's loss is member 0's (the others' fields hold their last evaluation's).
        const std::size_t loss_workers = team_step ? 1 : workers_.size();
        for (const Worker& wk :
             std::span<const Worker>(workers_.data(), loss_workers)) { // fixed worker order
            loss += wk.loss;
            correct += static_cast<double>(wk.correct);
        }
        float* tail = rank_buffer_.data() + param_count;
        tail[0] = static_cast<float>(loss);
        tail[1] = static_cast<float>(mine.size());
        tail[2] = static_cast<float>(correct);
        tail[3] = schedule_failure.empty() ? rate : std::numeric_limits<float>::quiet_NaN();
        // Several processes: one collective sums gradients and scalars; each slice's owner
        // scales and updates its parameters (threads split it) and the results are shared.
        // Clipping with several processes, or in a tensor-parallel team: every rank holds the whole
        // sum, then clips and updates every parameter (in one process otherwise, the executor's
        // `then` above did).
        double update_seconds = 0;
        auto timed_update = [&](auto&& update) {
            const auto tu = Clock::now();
            update();
            const auto tu_end = Clock::now();
            update_seconds += seconds_between(tu, tu_end);
            if (timeline) timeline->record(timeline->master(), Phase::update, tu, tu_end);
        };
        double grad_norm = std::numeric_limits<double>::quiet_NaN();
        bool clipped = false;
        auto t_summed = t_reduced; // the end of the collective, where the update follows it
        if (clipping() && fused_update) {
            const ClipFactor clip = clip_from_squares(scale); // as the workers computed it
            grad_norm = clip.norm;
            clipped = clip.clipped;
        } else if (clipping()) {
            comm_.allreduce_sum(rank_buffer_.span());
            t_summed = Clock::now();
            timed_update([&] {
                // Every rank sums the same bits in the same order, so all take the same factor.
                for (std::size_t b = 0; b < param_count; b += reduction_block)
                    keep_block_squares({b, std::min(param_count, b + reduction_block)}, g + b);
                const ClipFactor clip = clip_from_squares(scale);
                grad_norm = clip.norm;
                clipped = clip.clipped;
                exec_.for_chunks(param_count, [&](Range c) { scale_and_update(c, clip.by, g + c.begin, p); });
            });
        } else if (!fused_update) {
            optimizer_owned_ = {0, 0}; // a rank given no slice updates nothing
            comm_.allreduce_apply(rank_buffer_.span(), param_count, params_.span(), [&](Range owned) {
                optimizer_owned_ = owned;
                // Nested inside the allreduce event below (the update runs within the collective).
                timed_update([&] {
                    exec_.for_chunks(owned.size(), [&](Range c) {
                        scale_and_update(Range{owned.begin + c.begin, owned.begin + c.end}, scale,
                                         g + owned.begin + c.begin, p);
                    });
                });
            });
        }
        const auto t_allreduced = Clock::now();
        phases_[Phase::allreduce] += seconds_between(t_reduced, t_allreduced) - update_seconds;
        phases_[Phase::update] += update_seconds;
        if (timeline && comm_.size() > 1)
            timeline->record(timeline->master(), Phase::allreduce, t_reduced,
                             clipping() ? t_summed : t_allreduced);

        const double total_loss = tail[0];
        const auto samples = static_cast<std::size_t>(tail[1]);
        PARDL_REQUIRE(samples == global_rows, CommError, "ranks disagree on the batch: ", samples,
                      " rows summed, ", global_rows, " expected");
        if (comm_.size() > 1) require_same_rate(tail[3], rate, schedule_failure);
        if (!std::isfinite(total_loss)) throw NumericalError(non_finite_loss(total_loss, data, my_indices));

        // Running statistics are updated by each rank's first worker; rank 0's copy is the
        // reference (as DDP's buffer broadcast), which keeps per-worker batch norm consistent.
        if constexpr (Model::state_count > 0)
            if (comm_.size() > 1) comm_.broadcast(state_.span(), 0);
        ++step_;
        if (options_.check_replicas && step_ % options_.check_replicas == 0) check_replicas();
        if (timeline) timeline->record(timeline->master(), "step", t0, Clock::now());
        return {.loss = total_loss / static_cast<double>(samples),
                .samples = samples,
                .correct = static_cast<std::size_t>(tail[2]),
                .grad_norm = grad_norm,
                .clipped = clipped};
    }

    /// Why the step's loss is not finite: this rank's rows of the batch where they hold NaN or
    /// infinity (a step reads them as they are: checking every row of every step would cost more
    /// than the rows' gather), else divergence. Called only once the loss is found so.
    std::string non_finite_loss(double loss, const Dataset& data, std::span<const std::size_t> rows) const {
        for (const std::size_t i : rows) {
            const bool bad_x =
                !first_non_finite({data.features.data() + i * data.cols, data.cols}, "").empty();
            const bool bad_t =
                data.has_targets() &&
                !first_non_finite({data.targets.data() + i * data.target_cols, data.target_cols}, "").empty();
            if (bad_x || bad_t)
                return detail::concat("the loss became ", loss, " at step ", step_, ": dataset row ", i,
                                      "'s ", bad_x ? "features hold" : "targets hold",
                                      " NaN or infinity (the data, not the ",
                                      "training, is at fault: clean it)");
        }
        return detail::concat(
            "the loss became ", loss, " at step ", step_, ": training diverged (try a lower learning rate",
            comm_.size() > 1 ? "; or another rank's rows of the batch hold NaN or infinity)" : ")");
    }

    /// Stops with NumericalError if the ranks' parameters are not bit-identical.
    void check_replicas() {
        const std::uint64_t h = checksum();
        PARDL_REQUIRE(same_on_every_rank(h), NumericalError, "replicas diverged at step ", step_,
                      ": the ranks' parameter checksums differ (rank ", comm_.rank(), " has ", h, ")");
    }

    /// Trains one epoch (shuffled by (seed, epoch)); returns loss, accuracy and time.
    EpochRecord train_epoch(const Dataset& data, std::size_t epoch, std::size_t epochs = 0) {
        require_fits(data, "training dataset", /*labels_too=*/true);
        // As fit: ranks holding sets of other sizes would run other numbers of steps, and one would
        // wait for ever in a collective the others never reach.
        PARDL_REQUIRE(same_on_every_rank(data.rows), ConfigError, "train_epoch: the ranks disagree on the ",
                      "training rows (rank ", comm_.rank(), ": ", data.rows,
                      "); every rank must train on the same set");
        PARDL_REQUIRE(data.rows > 0, DataError, "train_epoch: the training dataset is empty");
        BatchLoader loader(data, options_.batch, options_.seed, /*shuffle=*/true, /*drop_last=*/false);
        return train_epoch(loader, data, epoch, epochs);
    }

    /// Evaluates mean loss and accuracy over `data` (training = false), split over ranks and
    /// workers; every sample is counted exactly once.
    Evaluation evaluate(const Dataset& data) {
        require_fits(data, "evaluation dataset", /*labels_too=*/true);
        // Each rank evaluates its share of the rows: ranks holding sets of other sizes would
        // count a mix of the two. A collective, as the evaluation is.
        PARDL_REQUIRE(same_on_every_rank(data.rows), ConfigError,
                      "evaluate: the ranks disagree on the rows (rank ", comm_.rank(), ": ", data.rows,
                      "); every rank must evaluate the same set");
        // A loss of 0 over no rows would read as a perfect model.
        PARDL_REQUIRE(data.rows > 0, DataError, "evaluate: the dataset is empty");
        return evaluate_fitting(data);
    }

    /// The model's outputs for the rows of x (logits, for SoftmaxCrossEntropy; the class is their
    /// argmax) into out, x.rows x Model::output_shape::size, in inference mode (StepContext
    /// training = false: dropout off, batch norm on its running statistics, which stay as they
    /// are). Runs on this rank's workers and talks to no other rank: under MPI each rank predicts
    /// its own rows.
    void predict(ConstMatrix x, Matrix out) {
        PARDL_REQUIRE(x.cols == Model::input_shape::size && x.stride == x.cols, DataError,
                      "predict: rows of ", x.cols, " values (stride ", x.stride, ") but the model input ",
                      Model::input_shape::str(), " needs ", Model::input_shape::size,
                      ", stored contiguously");
        PARDL_REQUIRE(out.rows == x.rows && out.cols == Model::output_shape::size, ConfigError,
                      "predict: out is ", out.rows, " x ", out.cols, " but ", x.rows, " rows of the model's ",
                      Model::output_shape::size, " outputs are needed");
        PARDL_REQUIRE(out.stride >= out.cols, ConfigError, "predict: out's rows are ", out.stride,
                      " floats apart but ", out.cols, " wide: they would overlap");
        forward_inference(
            x, Range{0, x.rows},
            [&](std::size_t, std::size_t first, ConstMatrix y) {
                for (std::size_t i = 0; i < y.rows; ++i) std::copy_n(y.row(i), y.cols, out.row(first + i));
            },
            [] {});
    }

    /// Trains `epochs` more epochs, evaluating on `test` (if given) after each; logs one line per
    /// epoch on rank 0 and calls on_epoch(record) on every rank. Epochs are numbered on from the
    /// ones this trainer already trained (epochs_trained()), so calling fit(train, test, 1) in a
    /// loop shuffles every epoch anew, as one fit over all of them does.
    std::vector<EpochRecord> fit(const Dataset& train, const Dataset* test, std::size_t epochs,
                                 const std::function<void(const EpochRecord&)>& on_epoch = {}) {
        // Both sets before the first step: a test set that does not fit fails now, not an epoch later.
        require_fits(train, "training dataset", /*labels_too=*/true);
        if (test) require_fits(*test, "test dataset", /*labels_too=*/true);
        // Every rank must run the same epochs over the same rows: a rank told fewer epochs would
        // leave the others waiting in a collective it never joins.
        const bool same_epochs = same_on_every_rank(epochs), same_rows = same_on_every_rank(train.rows);
        const bool same_test = same_on_every_rank(test ? test->rows + 1 : 0);
        PARDL_REQUIRE(same_epochs && same_rows && same_test, ConfigError, "fit: the ranks disagree on ",
                      !same_epochs ? "the number of epochs"
                      : !same_rows ? "the training rows"
                                   : "the test set",
                      " (rank ", comm_.rank(), ": ", epochs, " epochs, ", train.rows, " training rows, ",
                      test ? test->rows : 0, " test rows); every rank must call fit alike");
        // After the agreement, so that every rank refuses an empty set alike.
        PARDL_REQUIRE(train.rows > 0, DataError, "fit: the training dataset is empty");
        PARDL_REQUIRE(!test || test->rows > 0, DataError,
                      "fit: the test dataset is empty (give none to train without testing)");
        BatchLoader loader(train, options_.batch, options_.seed, true, false);
        std::vector<EpochRecord> history;
        const std::size_t first = epochs_trained_ + 1, last = epochs_trained_ + epochs;
        for (std::size_t e = first; e <= last; ++e) {
            EpochRecord rec = train_epoch(loader, train, e, last);
            if (test) {
                const Evaluation ev = evaluate_fitting(*test); // checked above
                // The same on every rank (summed across them). Finite parameters can still predict
                // nothing finite: batch-norm statistics edited into a checkpoint (a negative variance).
                PARDL_REQUIRE(std::isfinite(ev.loss), NumericalError, "the test loss is ",
                              std::isnan(ev.loss) ? "NaN" : "infinite", " after epoch ", e,
                              ": the model makes no finite prediction on the test set (the test data ",
                              "holds NaN or infinity, or the parameters or batch-norm statistics are off)");
                rec.test_loss = ev.loss;
                rec.test_accuracy = ev.accuracy;
            }
            if (options_.log && comm_.rank() == 0) {
                // Accuracy is argmax against labels: data without them (regression) shows the loss alone.
                const auto labelled = [](const Dataset& d) { return d.classes > 0; };
                std::fprintf(options_.out, "epoch %3zu  loss %.4f", e, rec.train_loss);
                if (labelled(train)) std::fprintf(options_.out, "  train acc %.4f", rec.train_accuracy);
                if (test) std::fprintf(options_.out, "  test loss %.4f", rec.test_loss);
                if (test && labelled(*test)) std::fprintf(options_.out, "  test acc %.4f", rec.test_accuracy);
                if (options_.schedule)
                    std::fprintf(options_.out, "  lr %.4g", static_cast<double>(rec.learning_rate));
                if (clipping())
                    std::fprintf(options_.out, "  clipped %zu step%s", rec.clipped_steps,
                                 rec.clipped_steps == 1 ? "" : "s");
                std::fprintf(options_.out, "  %.2f s  %.0f samples/s\n", rec.seconds, rec.samples_per_second);
                std::fflush(options_.out);
            }
            history.push_back(rec);
            if (on_epoch) on_epoch(rec);
        }
        return history;
    }

    // ---- checkpoints -----------------------------------------------------------------------

    /// Rank 0 writes the checkpoint atomically; other ranks wait for it. It holds what resuming
    /// needs: the parameters and batch-norm statistics, the step and epoch counters, and the
    /// optimizer's kind, learning rate, step count and state (momentum, Adam's moments; an
    /// optimizer that is not SavesState leaves it out), and the run's settings (run_settings),
    /// which load compares with its own. Parameters that are no longer finite (a
    /// diverged run) are not saved: NumericalError, and the file is untouched. A collective.
    void save(const std::filesystem::path& path) {
        require_finite_parameters("(checkpoint " + path.string() + " not written)");
        if constexpr (SavesState<Opt>)
            for (std::span<float> b : opt_.state_buffers())
                PARDL_REQUIRE(b.size() == param_count, ConfigError, "save: optimizer ", opt_.name(),
                              " has a state buffer of ", b.size(),
                              " values; SavesState needs one per parameter (", param_count, ")");
        share_optimizer_state();
        on_rank0_for_all(
            [&] {
                TrainingProgress progress;
                progress.step = step_;
                progress.epochs = epochs_trained_;
                if constexpr (SavesState<Opt>) {
                    progress.optimizer = opt_.name();
                    progress.learning_rate = opt_.learning_rate();
                    progress.optimizer_steps = opt_.steps();
                    for (std::span<float> b : opt_.state_buffers())
                        progress.optimizer_state.insert(progress.optimizer_state.end(), b.begin(), b.end());
                }
                progress.settings = run_settings();
                save_checkpoint(path, Model::signature(), params_.span(), state_.span(), &progress);
            },
            "rank 0 could not write checkpoint " + path.string());
    }

    /// Resumes from a checkpoint: everything save() wrote. Training on then continues bit for bit
    /// as the run that saved it would have, when this trainer is built as that one was (the same
    /// model, data, and run_settings: policy, ranks, workers, batch, seed, loss, subnormal mode,
    /// schedule, gradient clipping, and the optimizer's options such as momentum, weight decay, Adam's betas
    /// and eps) and the save was at an epoch's end (after fit or train_epoch: fit starts the next epoch).
    /// Returns what may keep it from that, one line each, the same on every rank, and with
    /// TrainerOptions::log rank 0 prints them: each setting that differs from the checkpoint's
    /// ("batch: 64 in the checkpoint, 128 here"), ranks whose own settings differ, and a
    /// checkpoint of format version 2, which recorded none. The run goes on from the checkpoint
    /// all the same (another batch or rank count is a legitimate choice), but not bit for bit.
    /// The data is recorded only where the program names it (TrainerOptions::settings; the examples
    /// record the image count, a hash of the labels and a CRC-32 of the pixels). The learning rate is
    /// progress, not a setting: it comes from the checkpoint, as PyTorch's optimizer.load_state_dict takes it
    /// (set_learning_rate after load to change it, unless a TrainerOptions::schedule sets it at every step);
    /// the other options stay this trainer's, where PyTorch would take the file's too. A checkpoint that
    /// holds another optimizer's state is refused (load_model takes its model alone); one without optimizer
    /// state (an optimizer that does not save it) leaves the optimizer as it is, and one of format version 1
    /// (the model alone) the optimizer and the counters. Rank 0 reads the file into scratch buffers and
    /// checks it whole (length, checksum, optimizer) before anything changes: a load that fails leaves the
    /// trainer, on every rank, as it was. A collective.
    std::vector<std::string> load(const std::filesystem::path& path) {
        return read_checkpoint(path, /*resume=*/true);
    }

    /// The model alone from a checkpoint (parameters and batch-norm statistics): the optimizer and
    /// the step and epoch counters stay as they are, as PyTorch's `model.load_state_dict` without
    /// the optimizer's. For fine-tuning with another optimizer, or inference. A collective.
    void load_model(const std::filesystem::path& path) { read_checkpoint(path, /*resume=*/false); }

    /// What a checkpoint records of this run beyond its progress, as (name, value) text: the
    /// policy, ranks, this rank's workers, batch, seed, loss, whether subnormals are flushed, the
    /// schedule (its rates at a few steps and a hash of every step's below 2^17: a function cannot
    /// be compared), the clipping bounds, the optimizer's options (OptimizerSettings), and the
    /// program's own (TrainerOptions::settings). load compares rank
    /// 0's with the file, and the ranks' with each other.
    std::vector<std::pair<std::string, std::string>> run_settings() const {
        std::vector<std::pair<std::string, std::string>> s{
            {"policy", P::name()},
            {"ranks", std::to_string(comm_.size())},
            {"workers per rank", std::to_string(exec_.workers())},
            {"batch", std::to_string(options_.batch)},
            {"seed", std::to_string(options_.seed)},
            {"loss", LossT::name()},
            {"flush subnormals", options_.flush_subnormals ? "yes" : "no"},
            {"schedule", schedule_setting_},
            {"clip gradient norm", clipping() ? setting_text(options_.clip_grad_norm) : "off"},
            {"clip gradient value", clamping() ? setting_text(options_.clip_grad_value) : "off"}};
        if constexpr (OptimizerSettings<Opt>)
            for (auto& setting : opt_.settings()) s.push_back(std::move(setting));
        s.insert(s.end(), options_.settings.begin(), options_.settings.end());
        return s;
    }

private:
    struct Worker {
        Worker(std::size_t rows, std::size_t grad_size, std::size_t param_copy_size)
            : ws(rows), x(rows * Model::input_shape::size), labels(rows), grads(grad_size),
              param_copy(param_copy_size) {}
        typename Model::Workspace ws;
        AlignedBuffer<float> x;
        AlignedBuffer<std::int32_t> labels;
        AlignedBuffer<float> targets;
        AlignedBuffer<float> grads; ///< empty for worker 0, which writes the rank buffer
        /// A private copy of the parameters for workers on threads of their own in a single
        /// process that fuses its update (empty otherwise), refreshed at the start of every step.
        /// The threads update the shared parameters in shares, so a thread that read them in place
        /// fetched the others' shares from their cores one cache line at a time, as the products
        /// asked for them; one sequential copy moves them faster. The update runs on the updating
        /// worker's copy and then copies its results to the shared parameters, so the refresh
        /// copies only what the others updated. Costs one more copy of the parameters per thread.
        /// With several processes the allreduce writes most of the parameters (the other ranks'
        /// slices), and a private copy per MPI rank measured slower, so Hybrid's threads read them
        /// in place there (benchmarks/performance_notes.md has the timings).
        AlignedBuffer<float> param_copy;
        Range updated{}; ///< the parameters this worker's fused update wrote in the last step
        double loss = 0;
        std::size_t correct = 0;
    };

    /// When worker w's data, forward and backward began, and when its backward ended.
    struct WorkerTimes {
        Clock::time_point start, data_done, forward_done, backward_done;
    };
    /// Worker 0 adds its phases to the epoch's (and says when it finished); with a timeline every
    /// worker records them in its own lane (no lock).
    void record_worker_phases(std::size_t w, const WorkerTimes& t, Clock::time_point& worker0_done) {
        if (w == 0) {
            phases_[Phase::data] += seconds_between(t.start, t.data_done);
            phases_[Phase::forward] += seconds_between(t.data_done, t.forward_done);
            phases_[Phase::backward] += seconds_between(t.forward_done, t.backward_done);
            worker0_done = t.backward_done;
        }
        if (Timeline* timeline = options_.timeline) {
            timeline->record(w, Phase::data, t.start, t.data_done);
            timeline->record(w, Phase::forward, t.data_done, t.forward_done);
            timeline->record(w, Phase::backward, t.forward_done, t.backward_done);
        }
    }

    /// Brings worker wk's parameter copy up to date: all of it, or, when the copies are current
    /// where their workers updated (copies_current), all but what wk updated itself.
    void refresh_param_copy(Worker& wk, bool copies_current) {
        const Range own = copies_current ? wk.updated : Range{};
        const float* p = params_.data();
        float* copy = wk.param_copy.data();
        std::copy(p, p + own.begin, copy);
        std::copy(p + own.end, p + param_count, copy + own.end);
        wk.updated = {};
    }

    static double seconds_between(Clock::time_point a, Clock::time_point b) {
        return std::chrono::duration<double>(b - a).count();
    }

    std::span<float> rank_grads() { return {rank_buffer_.data(), param_count}; }

    /// One process: nothing to wait for between the worker sum and the update, so the update of
    /// each slice runs in the same parallel region as its sum, and writes what it produced into the
    /// updating worker's parameter copy: right after the slice's sum (one memory pass), or, when
    /// clipping, in a second pass over the worker's slices once the whole sum and its norm are
    /// known. Not for a tensor-parallel team clipping, whose members update as they finish backward.
    bool fuses_update() const { return comm_.size() == 1 && !(team_step && clipping()); }
    /// Gradient clipping by global norm (TrainerOptions::clip_grad_norm).
    bool clipping() const { return options_.clip_grad_norm > 0; }
    /// Gradient clipping by value (TrainerOptions::clip_grad_value), inside the update.
    bool clamping() const { return options_.clip_grad_value > 0; }

    /// Records in clip_squares_ the sum of squares of the gradient's parameters in `piece`, one
    /// reduction block (sums[0] is piece.begin's), in the model's block order: the clipping norm's
    /// partial sum for that block. Every path computes it per block alike, so from the same summed
    /// gradient the norm's bits depend neither on the policy nor on the thread count.
    void keep_block_squares(Range piece, const float* sums) {
        double squares = 0;
        Model::for_each_param_block([&](std::size_t first, std::size_t count) {
            const std::size_t begin = std::max(first, piece.begin), end = std::min(first + count, piece.end);
            if (begin < end) squares += simd::sum_of_squares(sums + (begin - piece.begin), end - begin);
        });
        clip_squares_[piece.begin / reduction_block] = squares;
    }
    struct ClipFactor {
        double norm;  ///< the L2 norm of the mean gradient
        bool clipped; ///< norm > clip_grad_norm
        float by;     ///< what to multiply the summed gradient by: scale, times the clip factor if clipped
    };
    /// The norm from clip_squares_ (added in block order) and the multiplier it gives the summed
    /// gradient, whose mean is the sum times `scale`.
    ClipFactor clip_from_squares(float scale) const {
        double squares = 0;
        for (const double s : clip_squares_) squares += s;
        const double norm = static_cast<double>(scale) * std::sqrt(squares);
        // PyTorch's factor, max_norm / (norm + 1e-6); a gradient within the bound keeps the
        // unclipped step's bits. As in PyTorch (error_if_nonfinite = false), a norm that is not
        // finite reaches the parameters as NaN: the next step's loss check, or the epoch's check of
        // the parameters, stops the run.
        const double factor = static_cast<double>(options_.clip_grad_norm) / (norm + 1e-6);
        const bool clipped = factor < 1.0;
        return {norm, clipped, clipped ? static_cast<float>(static_cast<double>(scale) * factor) : scale};
    }

    /// The floating-point mode of steps and evaluations (TrainerOptions::flush_subnormals).
    SubnormalMode subnormal_mode() const {
        return options_.flush_subnormals ? SubnormalMode::flushed() : SubnormalMode::current();
    }

    /// The cross-worker reducer for worker w, or null when this worker is the whole job.
    WorkerReducer* reducer(std::size_t w) {
        return exec_.workers() == 1 && comm_.size() == 1 ? nullptr : exec_.reducer(w);
    }

    EpochRecord train_epoch(BatchLoader& loader, const Dataset& data, std::size_t epoch, std::size_t epochs) {
        if (data.has_targets())
            for (Worker& wk : workers_)
                if (wk.targets.size() != wk.ws.max_rows() * data.target_cols)
                    wk.targets.resize(wk.ws.max_rows() * data.target_cols);
        loader.start_epoch(epoch);
        ProgressLine progress(options_.progress && options_.log && comm_.rank() == 0, options_.out);
        const PhaseTimes phases_before = phases_;
        const auto t0 = Clock::now();
        double loss_sum = 0;
        std::size_t seen = 0, correct = 0, clipped = 0;
        const std::size_t batches = loader.batches_per_epoch();
        for (std::size_t b = 0; b < batches; ++b) {
            const StepResult r = step(data, loader.batch_indices(b));
            loss_sum += r.loss * static_cast<double>(r.samples);
            seen += r.samples;
            correct += r.correct;
            clipped += r.clipped ? 1 : 0;
            progress.update(epoch, epochs, b + 1, batches, loss_sum / static_cast<double>(seen),
                            static_cast<double>(seen) / seconds_since(t0));
        }
        progress.clear();
        require_finite_parameters("after epoch " + std::to_string(epoch));
        EpochRecord rec;
        rec.epoch = epoch;
        rec.seconds = seconds_since(t0);
        rec.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0.0;
        rec.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
        rec.samples_per_second = static_cast<double>(seen) / rec.seconds;
        rec.learning_rate = opt_.learning_rate();
        rec.clipped_steps = clipped;
        for (std::size_t i = 0; i < rec.phases.seconds.size(); ++i)
            rec.phases.seconds[i] = phases_.seconds[i] - phases_before.seconds[i];
        epochs_trained_ = std::max(epochs_trained_, epoch);
        return rec;
    }

    /// Throws DataError unless `data` fits the model and the loss: its rows as wide as the model's
    /// input, and what the loss reads (Loss: reads_labels, reads_targets) present and in range.
    /// labels_too: also every label (Dataset::check, one pass over the labels); step() checks only
    /// its own rows' labels instead, and fit(), train_epoch() and evaluate() the set's, once per call.
    void require_fits(const Dataset& data, const char* name, bool labels_too) const {
        if (labels_too) data.check(name);
        PARDL_REQUIRE(data.cols == Model::input_shape::size, DataError, name, " rows have ", data.cols,
                      " values but the model input ", Model::input_shape::str(), " needs ",
                      Model::input_shape::size);
        // A sample shape of the input's rank must be the input's shape: 14 x 56 images have the
        // 784 values of 28 x 28 ones, but not their rows. (Another rank is a flattening: 1 x 28 x 28
        // images for an Input<784>.)
        using In = typename Model::input_shape;
        if (data.sample_shape.size() == In::rank) {
            bool same = true;
            for (std::size_t d = 0; d < In::rank; ++d) same = same && data.sample_shape[d] == In::dims[d];
            if (!same) {
                std::string shape;
                for (std::size_t d : data.sample_shape) {
                    if (!shape.empty()) shape += 'x';
                    shape += std::to_string(d);
                }
                throw DataError(std::string(name) + " holds " + shape + " samples but the model input is " +
                                In::str());
            }
        }
        PARDL_REQUIRE(data.features.size() == data.rows * data.cols, DataError, name, " holds ",
                      data.features.size(), " feature values for ", data.rows, " rows of ", data.cols);
        constexpr std::size_t outputs = Model::output_shape::size;
        if constexpr (requires { requires LossT::reads_labels; }) {
            PARDL_REQUIRE(data.labels.size() == data.rows, DataError, name, " has ", data.labels.size(),
                          " labels for ", data.rows, " rows, and ", LossT::name(), " reads one per row");
            // Only a classification set's labels are checked class indices (Dataset::check).
            PARDL_REQUIRE(data.classes > 0, DataError, name,
                          " is not a classification set (classes = 0), and ", LossT::name(),
                          " reads class labels: set its classes");
            PARDL_REQUIRE(data.classes <= outputs, DataError, name, " has ", data.classes,
                          " classes but the model has ", outputs, " outputs (", LossT::name(),
                          " needs one per class: widen the last layer)");
        }
        if constexpr (requires { requires LossT::reads_targets; }) {
            PARDL_REQUIRE(data.has_targets() && data.target_cols == outputs &&
                              data.targets.size() >= data.rows * outputs,
                          DataError, name, " has ", data.target_cols, "-wide targets but ", LossT::name(),
                          " needs one target per model output (", outputs, ")");
        }
    }

    /// The model in inference mode (StepContext training = false) over rows [rows.begin, rows.end)
    /// of x, rank_rows_ at a time split over this rank's workers: each worker's block goes to
    /// on_block(w, first, y), y the outputs of x's rows from `first`; after every such round,
    /// after_round(). evaluate() and predict() both run on it.
    template <class OnBlock, class AfterRound>
    void forward_inference(ConstMatrix x, Range rows, OnBlock&& on_block, AfterRound&& after_round) {
        const ScopedSubnormalMode fp_mode(subnormal_mode());
        for (std::size_t start = rows.begin; start < rows.end; start += rank_rows_) {
            const std::size_t n = std::min(rank_rows_, rows.end - start);
            exec_.run(n, [&](std::size_t w, Range r) {
                if (r.empty()) return;
                const std::size_t first = start + r.begin;
                const StepContext ctx{false, options_.seed, step_, first, x.rows, nullptr, false};
                on_block(w, first,
                         Model::forward(params_.span(), state_.span(), x.row_block(first, r.size()),
                                        workers_[w].ws, ctx));
            });
            after_round();
        }
    }

    /// evaluate() on a dataset require_fits has passed.
    Evaluation evaluate_fitting(const Dataset& data) {
        const Range mine = balanced_range(data.rows, static_cast<std::size_t>(comm_.rank()),
                                          static_cast<std::size_t>(comm_.size()));
        double sums[3] = {0, 0, static_cast<double>(mine.size())};
        for (Worker& wk : workers_) {
            wk.loss = 0;
            wk.correct = 0;
        }
        forward_inference(
            data.x(), mine,
            [&](std::size_t w, std::size_t first, ConstMatrix y) {
                const ConstMatrix t = data.has_targets() ? data.t().row_block(first, y.rows) : ConstMatrix{};
                const Targets targets{data.y().subspan(first, y.rows), t};
                workers_[w].loss = LossT::loss(y, targets);
                workers_[w].correct = LossT::correct(y, targets);
            },
            [&] { // each round's sums in worker order, then cleared for the next
                for (Worker& wk : workers_) {
                    sums[0] += wk.loss;
                    sums[1] += static_cast<double>(wk.correct);
                    wk.loss = 0;
                    wk.correct = 0;
                }
            });
        comm_.allreduce_sum(std::span<double>(sums, 3));
        Evaluation e;
        e.samples = static_cast<std::size_t>(sums[2]);
        e.loss = e.samples ? sums[0] / sums[2] : 0.0;
        e.accuracy = e.samples ? sums[1] / sums[2] : 0.0;
        return e;
    }

    /// Runs fn on rank 0 alone; if it throws there (a pardl error, or any other: an allocation or
    /// a file system failure), every rank throws a CheckpointError instead of waiting in the next
    /// collective: rank 0 with fn's message, the others with `elsewhere` and that message (under
    /// mpiexec the first rank to print is often not rank 0). A collective.
    template <class Fn>
    void on_rank0_for_all(Fn&& fn, const std::string& elsewhere) {
        int failed = 0;
        std::string why;
        if (comm_.rank() == 0) {
            try {
                fn();
            } catch (const std::exception& e) {
                failed = 1;
                why = e.what();
            }
        }
        if (comm_.max(static_cast<std::uint64_t>(failed)) == 0) return;
        share_text(why); // every rank takes this path together
        // Rank 0 did not fail, yet the maximum says one did: this collective met another one (a
        // rank that called save or load alone), whose value it read as a failure, and the text
        // shared after it is no message (its length another collective's value, its bytes zeros).
        const bool out_of_step =
            (comm_.rank() == 0 && failed == 0) || why.empty() || why.find('\0') != std::string::npos;
        if (out_of_step)
            why = "the ranks are out of step (every rank must call save, load and fit together, in the "
                  "same order)";
        throw CheckpointError(comm_.rank() == 0 ? why : elsewhere + ": " + why);
    }

    /// load and load_model (see there); returns load's list of settings that differ.
    std::vector<std::string> read_checkpoint(const std::filesystem::path& path, bool resume) {
        TrainingProgress progress;
        std::string differences; // rank 0's, one per line, then shared
        on_rank0_for_all(
            [&] {
                std::vector<float> params(param_count), state(state_.size());
                load_checkpoint(path, Model::signature(), std::span<float>(params), std::span<float>(state),
                                &progress);
                // Trainer::save refuses such values; from a file that holds one (written otherwise, or
                // altered) training would diverge at once. The optimizer's state counts only where
                // it is resumed.
                std::string bad = first_non_finite(params, "parameter");
                if (bad.empty()) bad = first_non_finite(state, "state value");
                if (bad.empty() && resume)
                    bad = first_non_finite(progress.optimizer_state, "optimizer state value");
                PARDL_REQUIRE(bad.empty(), CheckpointError, "checkpoint ", path.string(),
                              " holds a value that ", "is not finite (", bad,
                              "), which Trainer::save never writes: the file was ",
                              "written otherwise or altered");
                if (resume) require_optimizer_fits(progress, path);
                if (resume) differences = settings_differences(progress);
                std::copy(params.begin(), params.end(), params_.span().begin());
                std::copy(state.begin(), state.end(), state_.span().begin());
            },
            "rank 0 could not read checkpoint " + path.string());
        comm_.broadcast(params_.span(), 0);
        if (!state_.empty()) comm_.broadcast(state_.span(), 0);
        param_copies_current_ = false;
        if (!resume) return {};
        share_text(differences);
        // Rank 0's settings stood for every rank's: say so where a rank's own differ (a node with
        // another thread count; the others the constructor found equal on every rank).
        if (!same_on_every_rank(settings_fingerprint()))
            differences += "the ranks' own settings differ (only rank 0's were compared)\n";
        std::vector<std::string> report;
        for (std::size_t at = 0; at < differences.size();) {
            const std::size_t end = std::min(differences.find('\n', at), differences.size());
            report.push_back(differences.substr(at, end - at));
            at = end + 1;
        }
        if (!report.empty() && options_.log && comm_.rank() == 0) {
            std::fprintf(options_.out, "note: checkpoint %s: ", path.c_str());
            for (std::size_t i = 0; i < report.size(); ++i)
                std::fprintf(options_.out, "%s%s", i ? "; " : "", report[i].c_str());
            std::fprintf(options_.out,
                         ". Training goes on from it, but where settings differ not bit for bit "
                         "as the run that saved it would have\n");
            std::fflush(options_.out);
        }
        // Rank 0's progress to every rank in one sum where the others add zeros: every count is
        // below 2^53 (load_checkpoint refuses more) and the rate a float, so doubles hold them exactly.
        double got[6] = {};
        if (comm_.rank() == 0) {
            got[0] = progress.present ? 1 : 0;
            got[1] = static_cast<double>(progress.step);
            got[2] = static_cast<double>(progress.epochs);
            got[3] = progress.optimizer.empty() ? 0 : 1;
            got[4] = static_cast<double>(progress.optimizer_steps);
            got[5] = progress.learning_rate;
        }
        comm_.allreduce_sum(std::span<double>(got, 6));
        if (got[0] == 0) return report; // version 1: the model alone
        step_ = static_cast<std::uint64_t>(got[1]);
        epochs_trained_ = static_cast<std::size_t>(got[2]);
        if constexpr (SavesState<Opt>) {
            if (got[3] == 0) return report;
            opt_.set_steps(static_cast<std::uint64_t>(got[4]));
            opt_.set_learning_rate(static_cast<float>(got[5]));
            std::size_t at = 0;
            for (std::span<float> b : opt_.state_buffers()) {
                if (comm_.rank() == 0)
                    std::copy_n(progress.optimizer_state.begin() + static_cast<std::ptrdiff_t>(at), b.size(),
                                b.begin());
                comm_.broadcast(b, 0);
                at += b.size();
            }
        }
        return report;
    }

    /// The settings of a checkpoint (its run_settings) that differ from this run's, one line
    /// each ("name: saved in the checkpoint, now here"), in the checkpoint's order, then those
    /// this run has and the checkpoint lacks; one line for a checkpoint that recorded none
    /// (version 2); nothing for the model alone (version 1), which resumes nothing.
    std::string settings_differences(const TrainingProgress& progress) const {
        if (!progress.present) return {};
        const auto& saved = progress.settings;
        std::string out;
        if (!progress.optimizer.empty() && progress.learning_rate == 0.0f && !options_.schedule)
            out += "learning rate: 0 in the checkpoint (where its schedule ended), and no schedule here: "
                   "training on would not move the parameters (set_learning_rate after load)\n";
        if (saved.empty())
            return out + "settings: not recorded (checkpoint format version 2), so not compared\n";
        const auto mine = run_settings();
        const auto find = [](const auto& list, const std::string& name) -> const std::string* {
            for (const auto& [n, v] : list)
                if (n == name) return &v;
            return nullptr;
        };
        for (const auto& [name, value] : saved) {
            const std::string* now = find(mine, name);
            if (now == nullptr)
                out += name + ": " + value + " in the checkpoint, not set here\n";
            else if (*now != value)
                out += name + ": " + value + " in the checkpoint, " + *now + " here\n";
        }
        // Settings added since some checkpoints were written, with what those checkpoints' runs did.
        static const std::vector<std::pair<std::string, std::string>> added_later{
            {"clip gradient norm", "off"}, {"clip gradient value", "off"}};
        for (const auto& [name, value] : mine) {
            const std::string* implied = find(added_later, name);
            if (find(saved, name) == nullptr && (implied == nullptr || *implied != value))
                out += name + ": not in the checkpoint, " + value + " here\n";
        }
        return out;
    }

    /// Steps whose every rate the schedule setting hashes: 2^17, 139 epochs of 938 steps.
    static constexpr std::uint64_t schedule_hashed_steps = std::uint64_t{1} << 17;

    /// TrainerOptions::schedule as a setting: "none", or its rates at steps 0, 10, 100, ..., 10^5
    /// (readable in a report) and a hash of its rate at every step below schedule_hashed_steps,
    /// which tells apart schedules that agree at those few steps (milestones at other epochs).
    /// That is 2^17 calls of the schedule, so the trainer makes them once, when it is built (its
    /// options do not change after), not at every save and load.
    static std::string schedule_fingerprint(const Schedule& schedule) {
        if (!schedule) return "none";
        std::string text = "rates at steps 0, 10, ..., 1e5:";
        detail::Fnv1a every_step;
        try {
            for (std::uint64_t step = 0; step <= 100000; step = step == 0 ? 10 : step * 10) {
                text += ' '; // not " " + text: GCC 12 warns of a false overlap there (-Wrestrict)
                text += setting_text(schedule(step));
            }
            for (std::uint64_t step = 0; step < schedule_hashed_steps; ++step) {
                const float rate = schedule(step);
                every_step.add(&rate, sizeof rate);
            }
        } catch (const std::exception&) {
            return "a function that throws for a step below " + std::to_string(schedule_hashed_steps);
        }
        char hash[17];
        std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(every_step.value));
        text += "; every step below ";
        text += std::to_string(schedule_hashed_steps);
        text += ": hash ";
        text += hash;
        return text;
    }

    /// After a step's allreduce, whose tail summed every rank's learning rate (NaN from a rank whose
    /// schedule failed): stops every rank alike (ConfigError) where one rank's schedule failed or
    /// the ranks used different rates, which the replica check cannot see where each rank updates
    /// its own slice and shares it. The sum of equal rates is exact up to the allreduce's rounding.
    void require_same_rate(float summed, float mine, const std::string& my_failure) const {
        const double ranks = comm_.size();
        PARDL_REQUIRE(std::isfinite(summed), ConfigError,
                      my_failure.empty() ? "the learning-rate schedule failed on another rank at step " +
                                               std::to_string(step_) + " (that rank says why)"
                                         : my_failure);
        const double mean = summed / ranks;
        PARDL_REQUIRE(std::abs(mean - mine) <= 1e-6 * std::abs(static_cast<double>(mine)), ConfigError,
                      "ranks disagree on the learning rate at step ", step_, ": rank ", comm_.rank(),
                      " used ", mine, ", the ranks' mean is ", mean,
                      ": build every rank's optimizer and TrainerOptions::schedule alike");
    }

    /// A hash of run_settings, for comparing ranks.
    std::uint64_t settings_fingerprint() const {
        detail::Fnv1a h;
        for (const auto& [name, value] : run_settings()) {
            h.add_text(name);
            h.add_text(value);
        }
        return h.value;
    }

    /// Throws ConfigError on every rank together, naming each setting of run_settings (and the
    /// model, the optimizer and the replica checks) in which the ranks differ, with this rank's
    /// value. Ranks given another seed would each draw other batches, so that some images count
    /// twice in a step and others never; another momentum, batch or loss would train a model that
    /// no serial run trains; other clipping bounds, another model or other replica checks take
    /// other paths through the step's collectives, and hang. A rank's thread count may differ (a
    /// node with other cores): the step is the same, summed in another order. A collective, once,
    /// at construction; nothing to do for one process.
    void require_same_settings_on_every_rank() {
        if (comm_.size() == 1) return;
        // The model (ranks running other programs) and the optimizer's name (Nesterov's SGD is in
        // it) first, two names every rank has: they name the cause where the lists below would
        // not line up.
        const auto max_over_ranks = [this](std::uint64_t v) { return comm_.max(v); };
        std::optional<std::string> differ = differing_across_ranks(
            {{"model", Model::signature()}, {"optimizer", opt_.name()}}, max_over_ranks);
        if (differ->empty()) {
            // Beyond what a checkpoint records, the replica checks (each a collective).
            std::vector<std::pair<std::string, std::string>> settings = run_settings();
            std::erase_if(settings, [](const auto& setting) { return setting.first == "workers per rank"; });
            settings.emplace_back("check replicas every", std::to_string(options_.check_replicas));
            differ = differing_across_ranks(settings, max_over_ranks);
        }
        PARDL_REQUIRE(differ && differ->empty(), ConfigError, "the ranks were given different settings: ",
                      differ ? *differ
                             : std::string("not the same list of settings (TrainerOptions::settings)"),
                      "; every rank must train alike");
    }

    /// Gives every rank rank 0's `text`. A collective; nothing to do for one process.
    void share_text(std::string& text) {
        if (comm_.size() == 1) return;
        const std::uint64_t n = comm_.max(comm_.rank() == 0 ? text.size() : std::uint64_t{0});
        text.resize(n);
        if (n == 0) return;
        std::vector<float> carrier;
        detail::broadcast_bytes(comm_, std::span<char>(text.data(), text.size()), 0, carrier);
    }

    /// Refuses (CheckpointError) optimizer state that is not this optimizer's: another kind, or
    /// another amount (SGD with and without momentum).
    void require_optimizer_fits(const TrainingProgress& progress, const std::filesystem::path& path) {
        if (progress.optimizer.empty()) return;
        if constexpr (SavesState<Opt>) {
            std::size_t mine = 0;
            for (std::span<float> b : opt_.state_buffers()) mine += b.size();
            PARDL_REQUIRE(progress.optimizer == opt_.name() && progress.optimizer_state.size() == mine,
                          CheckpointError, "checkpoint ", path.string(), " holds the state of optimizer ",
                          progress.optimizer, " (", progress.optimizer_state.size(),
                          " values); this trainer's is ", opt_.name(), " (", mine,
                          " values): resume with the optimizer that saved it, or take the model alone "
                          "(Trainer::load_model)");
        } else {
            PARDL_REQUIRE(false, CheckpointError, "checkpoint ", path.string(),
                          " holds the state of optimizer ", progress.optimizer,
                          ", which this trainer's optimizer cannot take (it is not SavesState): ",
                          "take the model alone (Trainer::load_model)");
        }
    }

    /// Makes every rank's optimizer state hold, for each parameter, the values of the lowest rank
    /// that updates it (where ranks split the update, each rank's state is current only on its
    /// own slice: allreduce_apply). Broadcasts from each slice's owner: bits move unchanged. A
    /// collective; nothing to do for one process.
    void share_optimizer_state() {
        if constexpr (SavesState<Opt>) {
            const auto ranks = static_cast<std::size_t>(comm_.size());
            if (ranks == 1) return;
            std::vector<double> bounds(2 * ranks, 0.0);
            const auto me = static_cast<std::size_t>(comm_.rank());
            bounds[2 * me] = static_cast<double>(optimizer_owned_.begin);
            bounds[2 * me + 1] = static_cast<double>(optimizer_owned_.end);
            comm_.allreduce_sum(std::span<double>(bounds));
            const auto begin_of = [&](std::size_t q) { return static_cast<std::size_t>(bounds[2 * q]); };
            const auto end_of = [&](std::size_t q) { return static_cast<std::size_t>(bounds[2 * q + 1]); };
            const std::vector<std::span<float>> buffers = opt_.state_buffers();
            for (std::size_t i = 0; i < param_count;) {
                // The lowest rank whose slice holds i; its run ends where its slice does or a
                // lower rank's begins. Every rank computes the same runs from the same bounds.
                std::size_t root = 0, end = param_count;
                bool found = false;
                for (std::size_t q = 0; q < ranks && !found; ++q)
                    if (begin_of(q) <= i && i < end_of(q)) {
                        root = q;
                        end = end_of(q);
                        found = true;
                    }
                for (std::size_t q = 0; q < (found ? root : ranks); ++q)
                    if (begin_of(q) > i) end = std::min(end, begin_of(q));
                for (std::span<float> b : buffers)
                    comm_.broadcast(b.subspan(i, end - i), static_cast<int>(root));
                i = end;
            }
        }
    }

    /// Stops with NumericalError (on every rank) if a parameter or state value is NaN or infinite.
    /// The loss check in step() sees most divergence at once, but not all: a value can overflow
    /// where no loss ever sees it (a filter whose ReLU outputs are all masked, a max pooling whose
    /// window has a finite winner), and such a model must not pass as trained. One pass over the
    /// parameters, once per epoch and before a save.
    void require_finite_parameters(const std::string& when) {
        std::string why = first_non_finite(params_.span(), "parameter");
        if (why.empty()) why = first_non_finite(state_.span(), "state value");
        // Adam's second moments can overflow where the parameters stay finite (and then freeze).
        if constexpr (SavesState<Opt>)
            for (std::span<float> b : opt_.state_buffers())
                if (why.empty()) why = first_non_finite(b, "optimizer state value");
        // The ranks hold the same parameters; agreeing still keeps one rank from waiting for another.
        if (comm_.max(static_cast<std::uint64_t>(!why.empty())) == 0) return;
        // This rank's are finite, and the ranks hold the same: another rank's differ, or this
        // collective met another one (a rank that called save alone).
        PARDL_REQUIRE(!why.empty(), NumericalError, "another rank's parameters are not finite ", when,
                      " (training diverged: try a lower learning rate), or the ranks are out of step (every ",
                      "rank must call save, load and fit together, in the same order)");
        throw NumericalError(why + " " + when + ": training diverged (try a lower learning rate)");
    }

    /// Whether every rank holds the same v. A collective: two, the minimum before the maximum on
    /// every rank (in one expression the order of the two would be the compiler's).
    bool same_on_every_rank(std::uint64_t v) {
        const std::uint64_t lo = comm_.min(v);
        const std::uint64_t hi = comm_.max(v);
        return lo == hi;
    }

    /// "what i of n is inf" for the first value of v that is NaN or infinite; empty if none.
    static std::string first_non_finite(std::span<const float> v, const char* what) {
        const auto it = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
        if (it == v.end()) return {};
        return std::string(what) + " " + std::to_string(it - v.begin()) + " of " + std::to_string(v.size()) +
               " is " + std::to_string(*it);
    }

    Opt opt_;
    TrainerOptions options_;
    std::string schedule_setting_; ///< the "schedule" run setting (schedule_fingerprint)
    Comm comm_;
    Executor exec_;
    bool param_copies_current_ = false;  ///< see step() and Worker::param_copy
    typename Comm::ReduceBuffer params_; ///< in shared memory where ranks share a node (see allreduce_apply)
    AlignedBuffer<float> state_;
    typename Comm::ReduceBuffer rank_buffer_; ///< worker 0's gradients + tail; what the allreduce sends
    std::vector<Worker> workers_;
    std::vector<std::span<float>> grad_views_;
    /// Every worker's workspace, in order: a team's members' for a data-parallel prefix.
    std::vector<typename Model::Workspace*> team_workspaces_;
    /// With clipping: the gradient's sum of squares per reduction block (keep_block_squares).
    std::vector<double> clip_squares_;
    std::size_t rank_rows_ = 0;
    std::uint64_t step_ = 0;
    /// The parameters this rank's optimizer updated in the last step (allreduce_apply's slice);
    /// all of them for one process, when clipping, or before the first step.
    Range optimizer_owned_{0, param_count};
    std::size_t epochs_trained_ = 0; ///< the highest epoch number trained (fit numbers on from it)
    PhaseTimes phases_;
};

} // namespace pardl
