// MpiEnvironment: RAII ownership of MPI_Init_thread / MPI_Finalize, asking for
// MPI_THREAD_FUNNELED (only the master thread calls MPI, outside parallel regions) and refusing
// to run if the library provides less.
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

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "pardl/core/errors.hpp"

namespace pardl {

class MpiEnvironment {
public:
    MpiEnvironment() : MpiEnvironment(nullptr, nullptr) {}
    MpiEnvironment(int& argc, char**& argv) : MpiEnvironment(&argc, &argv) {}
    MpiEnvironment(const MpiEnvironment&) = delete;
    MpiEnvironment& operator=(const MpiEnvironment&) = delete;

    ~MpiEnvironment() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owns_ && !finalized) MPI_Finalize();
    }

    static int world_rank() {
        int r = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &r);
        return r;
    }
    static int world_size() {
        int s = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &s);
        return s;
    }

    /// The largest of every rank's v (a collective: every rank calls it). For a decision the
    /// ranks must take together, such as stopping before any work.
    static int max_over_ranks(int v) {
        int out = v;
        MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return out;
    }

    /// The largest of every rank's v, for 64-bit values (hashes: the smallest is ~max(~v)).
    static std::uint64_t max_over_ranks(std::uint64_t v) {
        std::uint64_t out = v;
        MPI_Allreduce(&v, &out, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
        return out;
    }

    /// Ends every rank of the job: the way out after an error on one rank, so that ranks blocked
    /// in a collective do not hang. mpiexec then exits non-zero.
    [[noreturn]] static void abort(int code) {
        std::fflush(stdout);
        std::fflush(stderr);
        // The launcher forwards each rank's output through a pipe; an immediate abort can make
        // it tear the job down before this rank's last message (the reason) has been forwarded.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        MPI_Abort(MPI_COMM_WORLD, code);
        std::_Exit(code); // MPI_Abort does not return; this keeps [[noreturn]] honest.
    }

private:
    MpiEnvironment(int* argc, char*** argv) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized) return; // someone else owns MPI (a host program); we only use it
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            throw CommError("MPI_Init_thread failed");
        owns_ = true;
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_Finalize();
            owns_ = false;
            throw CommError("the MPI library provides thread level " + std::to_string(provided) +
                            ", below MPI_THREAD_FUNNELED which pardl's hybrid policies need");
        }
        // Return codes instead of aborting inside MPI, so every failure gets our message.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    bool owns_ = false;
};

} // namespace pardl
