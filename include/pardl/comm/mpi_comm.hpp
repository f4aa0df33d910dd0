// MpiComm: the communicator over MPI (MPICH is the engine we build and test with). Buffers
// larger than INT_MAX elements are sent in chunks, and every return code is checked.
#pragma once

// MPICH and Open MPI still ship the deprecated C++ bindings, whose `namespace MPI` would clash
// with the pardl::MPI policy under `using namespace pardl`.
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "pardl/comm/communicator.hpp"
#include "pardl/comm/mpi_environment.hpp"
#include "pardl/core/errors.hpp"

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
inline MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
inline MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <>
inline MPI_Datatype mpi_type<std::uint64_t>() { return MPI_UINT64_T; }
} // namespace detail

class MpiComm {
public:
    using Environment = MpiEnvironment;

    /// Uses `comm` (MPI_COMM_WORLD by default); MPI must be initialised (MpiEnvironment alive).
    explicit MpiComm(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        PARDL_REQUIRE(initialized, CommError, "MpiComm used before MPI was initialised: keep a pardl::MpiEnvironment alive");
        detail::check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        detail::check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    }

    int rank() const { return rank_; }
    int size() const { return size_; }
    static const char* name() { return "mpi"; }

    void allreduce_sum(std::span<float> v) { allreduce(v, MPI_SUM); }
    void allreduce_sum(std::span<double> v) { allreduce(v, MPI_SUM); }

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
            detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, p, n, detail::mpi_type<T>(), op, comm_), "MPI_Allreduce");
        });
    }

    MPI_Comm comm_;
    int rank_ = 0;
    int size_ = 1;
};

} // namespace pardl
