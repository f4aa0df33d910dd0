// MpiComm: the communicator over MPI (MPICH is the engine we build and test with). Buffers
// larger than INT_MAX elements are sent in chunks, and every return code is checked. Ranks that
// share a node can reduce a buffer from `allocate` through an MPI-3 shared-memory window instead
// of MPI_Allreduce (a hierarchical allreduce: shared memory inside a node, MPI across nodes).
#pragma once

// First: it includes <mpi.h> the way every pardl header must (without MPI's C++ bindings).
#include "pardl/comm/mpi_environment.hpp"

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pardl/comm/communicator.hpp"
#include "pardl/core/errors.hpp"
#include "pardl/execution/partition.hpp"
#include "pardl/tensor/buffer.hpp"
#include "pardl/tensor/vector_loop.hpp"

namespace pardl {

namespace detail {
inline void check_mpi(int code, const char* what) {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    throw CommError(std::string(what) + " failed: " + std::string(text, static_cast<std::size_t>(len)));
}
template <class T>
MPI_Datatype mpi_type();
template <>
inline MPI_Datatype mpi_type<float>() {
    return MPI_FLOAT;
}
template <>
inline MPI_Datatype mpi_type<double>() {
    return MPI_DOUBLE;
}
template <>
inline MPI_Datatype mpi_type<std::uint64_t>() {
    return MPI_UINT64_T;
}

inline bool mpi_finalized() noexcept {
    int finalized = 0;
    MPI_Finalized(&finalized);
    return finalized != 0;
}

/// Floats per cache line: the unit in which shared buffers are padded and split over node ranks.
inline constexpr std::size_t shm_line = 16;

struct ShmWindow;

/// What an MpiComm and its shared buffers have in common: the node and cross-node communicators
/// (owned, freed with the last holder) and the registry of live shared windows.
struct MpiCommState {
    MPI_Comm comm = MPI_COMM_NULL;  ///< the user's communicator (not owned)
    MPI_Comm node = MPI_COMM_NULL;  ///< ranks of comm on this node (MPI_COMM_TYPE_SHARED)
    MPI_Comm cross = MPI_COMM_NULL; ///< ranks of comm with this rank's node-local rank, one per node
    int node_rank = 0;
    int node_size = 1;
    int nodes = 1;
    bool shm_usable = false; ///< every node has node_size ranks and PARDL_MPI_SHM is not 0 anywhere
    std::vector<ShmWindow*> live;

    MpiCommState() = default;
    MpiCommState(const MpiCommState&) = delete;
    MpiCommState& operator=(const MpiCommState&) = delete;
    ~MpiCommState() {
        if (mpi_finalized()) return;
        if (cross != MPI_COMM_NULL) MPI_Comm_free(&cross);
        if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
    }
};

/// One MPI_Win_allocate_shared window: each node rank's segment holds n floats padded to whole
/// cache lines; `peers[k]` is node rank k's segment as mapped in this process.
struct ShmWindow {
    std::shared_ptr<MpiCommState> state;
    MPI_Win win = MPI_WIN_NULL;
    bool locked = false;
    std::size_t n = 0;
    std::size_t lines = 0;
    float* local = nullptr;
    std::vector<float*> peers;

    /// Collective over the node communicator.
    ShmWindow(std::shared_ptr<MpiCommState> s, std::size_t count)
        : state(std::move(s)), n(count), lines((count + shm_line - 1) / shm_line) {
        const std::size_t bytes = lines * shm_line * sizeof(float);
        PARDL_REQUIRE(bytes <= static_cast<std::size_t>(std::numeric_limits<MPI_Aint>::max()), CommError,
                      "shared reduce buffer of ", count, " floats is too large");
        MPI_Info info = MPI_INFO_NULL;
        check_mpi(MPI_Info_create(&info), "MPI_Info_create");
        // Each segment on its own pages: page-aligned bases, and no false sharing between ranks.
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
        MPI_Info_set(info, "same_size", "true");
        void* base = nullptr;
        const int rc = MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes), static_cast<int>(sizeof(float)),
                                               info, state->node, &base, &win);
        MPI_Info_free(&info);
        check_mpi(rc, "MPI_Win_allocate_shared");
        MPI_Win_set_errhandler(win, MPI_ERRORS_RETURN);
        local = static_cast<float*>(base);
        std::fill_n(local, lines * shm_line, 0.0f);
        peers.resize(static_cast<std::size_t>(state->node_size));
        for (int k = 0; k < state->node_size; ++k) {
            MPI_Aint size = 0;
            int disp = 0;
            void* p = nullptr;
            check_mpi(MPI_Win_shared_query(win, k, &size, &disp, &p), "MPI_Win_shared_query");
            peers[static_cast<std::size_t>(k)] = static_cast<float*>(p);
        }
        // Passive-target epoch for the window's whole life: MPI_Win_sync is only valid inside one.
        check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, win), "MPI_Win_lock_all");
        locked = true;
    }
    ShmWindow(const ShmWindow&) = delete;
    ShmWindow& operator=(const ShmWindow&) = delete;

    bool aligned() const noexcept {
        return std::all_of(peers.begin(), peers.end(), [](const float* p) {
            return p != nullptr && reinterpret_cast<std::uintptr_t>(p) % buffer_alignment == 0;
        });
    }

    /// Collective over the node communicator (MPI_Win_free).
    ~ShmWindow() {
        auto& reg = state->live;
        reg.erase(std::remove(reg.begin(), reg.end(), this), reg.end());
        if (win == MPI_WIN_NULL || mpi_finalized()) return;
        if (locked) MPI_Win_unlock_all(win);
        MPI_Win_free(&win);
    }
};
} // namespace detail

class MpiComm {
public:
    using Environment = MpiEnvironment;

    /// A flat float buffer for allreduce_sum. On a node with several ranks (and PARDL_MPI_SHM not
    /// 0) it is this rank's segment of an MPI-3 shared-memory window, so that allreduce_sum of
    /// exactly its span reduces through shared memory; otherwise it is an AlignedBuffer. Either
    /// way it is zero-initialised and 64-byte aligned. Move-only.
    ///
    /// Destroying (or move-assigning over) a shared buffer frees its window, a collective call:
    /// all ranks must destroy their buffers from `allocate` in the same order, before MPI is
    /// finalised (the trainer does: its buffer dies with it, before the MpiEnvironment).
    class ReduceBuffer {
    public:
        ReduceBuffer() = default;
        ReduceBuffer(ReduceBuffer&& o) noexcept
            : local_(std::move(o.local_)), window_(std::move(o.window_)),
              data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
        ReduceBuffer& operator=(ReduceBuffer&& o) noexcept {
            if (this != &o) {
                window_.reset(); // collective when shared: see the class comment
                local_ = std::move(o.local_);
                window_ = std::move(o.window_);
                data_ = std::exchange(o.data_, nullptr);
                size_ = std::exchange(o.size_, 0);
            }
            return *this;
        }
        ReduceBuffer(const ReduceBuffer&) = delete;
        ReduceBuffer& operator=(const ReduceBuffer&) = delete;
        ~ReduceBuffer() = default;

        float* data() noexcept { return data_; }
        const float* data() const noexcept { return data_; }
        std::size_t size() const noexcept { return size_; }
        bool empty() const noexcept { return size_ == 0; }
        /// True when the buffer lives in a shared-memory window (allreduce_sum takes the node path).
        bool shared() const noexcept { return window_ != nullptr; }
        void zero() noexcept { std::fill_n(data_, size_, 0.0f); }
        float& operator[](std::size_t i) noexcept { return data_[i]; }
        const float& operator[](std::size_t i) const noexcept { return data_[i]; }
        float* begin() noexcept { return data_; }
        float* end() noexcept { return data_ + size_; }
        const float* begin() const noexcept { return data_; }
        const float* end() const noexcept { return data_ + size_; }
        std::span<float> span() noexcept { return {data_, size_}; }
        std::span<const float> span() const noexcept { return {data_, size_}; }
        operator std::span<float>() noexcept { return span(); }
        operator std::span<const float>() const noexcept { return span(); }

    private:
        friend class MpiComm;
        AlignedBuffer<float> local_;
        std::unique_ptr<detail::ShmWindow> window_;
        float* data_ = nullptr;
        std::size_t size_ = 0;
    };

    /// Uses `comm` (MPI_COMM_WORLD by default); MPI must be initialised (MpiEnvironment alive).
    /// Collective over `comm`: it splits off the node and cross-node communicators.
    /// `ranks_per_node` > 0 cuts each node into groups of that many consecutive node ranks that
    /// are treated as nodes of their own: a way to exercise the hierarchical path on one machine.
    explicit MpiComm(MPI_Comm comm = MPI_COMM_WORLD, int ranks_per_node = 0) : comm_(comm) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        PARDL_REQUIRE(initialized, CommError,
                      "MpiComm used before MPI was initialised: keep a pardl::MpiEnvironment alive");
        detail::check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        detail::check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");

        state_ = std::make_shared<detail::MpiCommState>();
        detail::MpiCommState& s = *state_;
        s.comm = comm_;
        detail::check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &s.node),
                          "MPI_Comm_split_type");
        detail::check_mpi(MPI_Comm_rank(s.node, &s.node_rank), "MPI_Comm_rank");
        if (ranks_per_node > 0) {
            MPI_Comm group = MPI_COMM_NULL;
            detail::check_mpi(MPI_Comm_split(s.node, s.node_rank / ranks_per_node, s.node_rank, &group),
                              "MPI_Comm_split");
            MPI_Comm_free(&s.node);
            s.node = group;
            detail::check_mpi(MPI_Comm_rank(s.node, &s.node_rank), "MPI_Comm_rank");
        }
        detail::check_mpi(MPI_Comm_size(s.node, &s.node_size), "MPI_Comm_size");
        detail::check_mpi(MPI_Comm_split(comm_, s.node_rank, rank_, &s.cross), "MPI_Comm_split");
        MPI_Errhandler handler;
        detail::check_mpi(MPI_Comm_get_errhandler(comm_, &handler), "MPI_Comm_get_errhandler");
        MPI_Comm_set_errhandler(s.node, handler);
        MPI_Comm_set_errhandler(s.cross, handler);
        MPI_Errhandler_free(&handler);

        // The shared path needs the same layout on every node (then rank k of every node reduces
        // the same slice across nodes) and the consent of every rank.
        const char* env = std::getenv("PARDL_MPI_SHM");
        const bool enabled = !(env && std::strcmp(env, "0") == 0);
        int lo[2] = {s.node_size, enabled ? 1 : 0};
        int hi = s.node_size;
        detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, lo, 2, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
        detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, comm_), "MPI_Allreduce");
        s.shm_usable = lo[0] == hi && lo[1] == 1;
        s.nodes = size_ / s.node_size;
    }
    MpiComm(MpiComm&&) noexcept = default;
    MpiComm& operator=(MpiComm&&) noexcept = default;
    MpiComm(const MpiComm&) = delete;
    MpiComm& operator=(const MpiComm&) = delete;
    /// Frees the node and cross-node communicators once no shared buffer uses them.
    ~MpiComm() = default;

    int rank() const { return rank_; }
    int size() const { return size_; }
    static const char* name() { return "mpi"; }

    /// A zeroed buffer of n floats for allreduce_sum (see ReduceBuffer). Collective: every rank
    /// calls it in the same order with the same n.
    ReduceBuffer allocate(std::size_t n) {
        ReduceBuffer b;
        if (state_ && state_->shm_usable && state_->node_size > 1 && n > 0) {
            auto w = std::make_unique<detail::ShmWindow>(state_, n);
            // Every rank must agree on the path, or one would wait in the node barrier while
            // another is in MPI_Allreduce.
            int ok = w->aligned() ? 1 : 0;
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
            if (ok) {
                state_->live.push_back(w.get());
                b.data_ = w->local;
                b.size_ = n;
                b.window_ = std::move(w);
                return b;
            }
        }
        b.local_ = AlignedBuffer<float>(n);
        b.data_ = b.local_.data();
        b.size_ = n;
        return b;
    }

    /// In place; bit-identical on every rank. If `v` is exactly the span of a live shared
    /// ReduceBuffer (same data, same size) the sum goes through shared memory.
    void allreduce_sum(std::span<float> v) {
        if (detail::ShmWindow* w = find_shared(v)) return shared_allreduce(*w, nullptr, nullptr);
        allreduce(v, MPI_SUM);
    }
    void allreduce_sum(std::span<double> v) { allreduce(v, MPI_SUM); }

    /// See the Communicator contract. Through shared memory (both spans exactly live shared
    /// buffers) the owner of each slice of the node sum applies it and copies the results to
    /// the node's other ranks, so the node's ranks split the apply work; otherwise every rank
    /// applies the whole range after an MPI_Allreduce.
    template <class Apply>
    void allreduce_apply(std::span<float> values, std::size_t n, std::span<float> results, Apply&& apply) {
        detail::ShmWindow* wv = find_shared(values);
        detail::ShmWindow* wr = find_shared(results);
        // Segments are told apart by node rank, never by address: MPI may map a rank's own
        // segment at a second address besides the one allocate() returned.
        const auto me = static_cast<std::size_t>(state_ ? state_->node_rank : 0);
        if (wv && wr && n <= values.size() && n <= results.size())
            return shared_allreduce(
                *wv,
                [&](std::size_t b, std::size_t e) {
                    const std::size_t ae = std::min(e, n);
                    if (b < ae) {
                        apply(Range{b, ae});
                        float* const* out = wr->peers.data();
                        for (std::size_t k = 0; k < wr->peers.size(); ++k)
                            if (k != me) std::copy(wr->local + b, wr->local + ae, out[k] + b);
                    }
                    // The tail (values past n) goes to every rank, as allreduce_sum would.
                    const std::size_t tb = std::max(b, n);
                    if (tb < e)
                        for (std::size_t k = 0; k < wv->peers.size(); ++k)
                            if (k != me) std::copy(wv->local + tb, wv->local + e, wv->peers[k] + tb);
                },
                wr);
        allreduce(values, MPI_SUM);
        apply(Range{0, n});
    }

    void broadcast(std::span<float> v, int root = 0) {
        for_chunks(v, [&](float* p, int n) {
            detail::check_mpi(MPI_Bcast(p, n, MPI_FLOAT, root, comm_), "MPI_Bcast");
        });
    }
    double sum(double v) {
        allreduce(std::span<double>(&v, 1), MPI_SUM);
        return v;
    }
    std::uint64_t min(std::uint64_t v) {
        allreduce(std::span<std::uint64_t>(&v, 1), MPI_MIN);
        return v;
    }
    std::uint64_t max(std::uint64_t v) {
        allreduce(std::span<std::uint64_t>(&v, 1), MPI_MAX);
        return v;
    }
    void barrier() { detail::check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

    MPI_Comm native() const { return comm_; }
    /// Ranks on this node, and whether allocate() hands out shared-memory buffers.
    int node_size() const { return state_ ? state_->node_size : 1; }
    bool shared_memory() const { return state_ && state_->shm_usable && state_->node_size > 1; }

private:
    template <class T, class Fn>
    static void for_chunks(std::span<T> v, Fn&& fn) {
        constexpr std::size_t max_chunk = INT_MAX;
        for (std::size_t off = 0; off < v.size(); off += max_chunk)
            fn(v.data() + off, static_cast<int>(std::min(max_chunk, v.size() - off)));
    }
    template <class T>
    void allreduce(std::span<T> v, MPI_Op op) {
        for_chunks(v, [&](T* p, int n) {
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, n, detail::mpi_type<T>(), op, comm_),
                              "MPI_Allreduce");
        });
    }

    /// The live shared buffer whose span is exactly `v`, if any.
    detail::ShmWindow* find_shared(std::span<float> v) const {
        if (state_ && !v.empty())
            for (detail::ShmWindow* w : state_->live)
                if (w->local == v.data() && w->n == v.size()) return w;
        return nullptr;
    }

    /// Reduce-scatter + allgather through shared memory: node rank r sums slice r (whole cache
    /// lines, split by balanced_range) over the node ranks' segments in rank order, allreduces it
    /// across nodes, and then either writes it into slice r of every segment (allreduce_sum) or,
    /// with an `owner` hook, keeps it in its own segment and calls owner(begin, end)
    /// (allreduce_apply). With the hook the others' copies of the slice are left as they were:
    /// clearing them wrote lines that their ranks write again in their next backward, a transfer
    /// between the cores for nothing (2-rank W-MLP in alternating runs on the AMD EPYC (Zen 5) guest of
    /// docs/performance.md: the same or slightly faster without it). Each element is computed
    /// once, so all ranks hold bit-identical results. `also` is a second window whose writes must
    /// be made visible by the closing synchronisation.
    template <class Owner>
    void shared_allreduce(detail::ShmWindow& w, Owner&& owner, detail::ShmWindow* also) {
        using detail::shm_line;
        constexpr bool hooked = !std::is_same_v<std::decay_t<Owner>, std::nullptr_t>;
        const detail::MpiCommState& s = *state_;
        const std::size_t k_n = static_cast<std::size_t>(s.node_size);
        float* const* seg = w.peers.data();
        float* own = w.local;
        const auto me = static_cast<std::size_t>(s.node_rank);
        const Range mine = balanced_range(w.lines, static_cast<std::size_t>(s.node_rank), k_n);
        node_sync(w, also);
        // Segments are padded to whole lines, so every line here is a full 16 floats. The adds are
        // vectors written out: left to the compiler, -O3 turned them into scalar adds and shuffles
        // (the W-MLP allreduce phase took twice as long as at -O2).
        auto sum_line = [&](std::size_t o, float* acc) {
            std::copy_n(seg[0] + o, shm_line, acc);
            for (std::size_t k = 1; k < k_n; ++k)
                simd::for_each_vector(
                    shm_line, [](simd::FloatVector& a, const simd::FloatVector& p) { a += p; }, acc,
                    static_cast<const float*>(seg[k] + o));
        };
        const bool scatter_now = s.nodes == 1 && !hooked;
        for (std::size_t l = mine.begin; l < mine.end; ++l) {
            const std::size_t o = l * shm_line;
            alignas(64) float acc[shm_line];
            sum_line(o, acc);
            std::copy_n(acc, shm_line, own + o);
            if (scatter_now)
                for (std::size_t k = 0; k < k_n; ++k)
                    if (k != me) std::copy_n(acc, shm_line, seg[k] + o);
        }
        const std::size_t b = std::min(w.n, mine.begin * shm_line), e = std::min(w.n, mine.end * shm_line);
        if (s.nodes > 1) {
            // Across nodes: ranks with the same node-local rank own the same slice.
            for_chunks(std::span<float>(own + b, e - b), [&](float* p, int n) {
                detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, n, MPI_FLOAT, MPI_SUM, s.cross),
                                  "MPI_Allreduce");
            });
            if constexpr (!hooked)
                for (std::size_t k = 0; k < k_n; ++k)
                    if (k != me) std::copy(own + b, own + e, seg[k] + b);
        }
        if constexpr (hooked)
            if (b < e) owner(b, e);
        node_sync(w, also);
    }

    /// Makes every node rank's stores to the windows visible to the others (MPI-3 shared-memory
    /// model: sync, barrier, sync).
    void node_sync(detail::ShmWindow& w, detail::ShmWindow* also) {
        detail::check_mpi(MPI_Win_sync(w.win), "MPI_Win_sync");
        if (also && also != &w) detail::check_mpi(MPI_Win_sync(also->win), "MPI_Win_sync");
        detail::check_mpi(MPI_Barrier(state_->node), "MPI_Barrier");
        detail::check_mpi(MPI_Win_sync(w.win), "MPI_Win_sync");
        if (also && also != &w) detail::check_mpi(MPI_Win_sync(also->win), "MPI_Win_sync");
    }

    MPI_Comm comm_;
    int rank_ = 0;
    int size_ = 1;
    std::shared_ptr<detail::MpiCommState> state_;
};

} // namespace pardl
