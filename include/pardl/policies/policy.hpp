// Policy<Executor, Communicator>: how a training step is spread over threads (executor) and
// processes (communicator). The two parts are orthogonal; the named aliases cover the four
// data-parallel combinations and TensorParallel (policies/tensor_parallel.hpp). A new mechanism is a new
// executor or communicator and an alias.
#pragma once

#include <string>
#include <type_traits>

#include "pardl/comm/communicator.hpp"
#include "pardl/comm/local_comm.hpp"
#include "pardl/execution/executor.hpp"
#include "pardl/execution/serial_executor.hpp"

namespace pardl {

template <Executor E, Communicator C>
struct Policy {
    using executor = E;
    using communicator = C;
    /// The label for logs and run records: "serial", "openmp", "mpi", "hybrid" (OpenMP threads in
    /// MPI ranks), "tensor", or "<executor>+<communicator>" for other combinations.
    static std::string name() {
        const std::string e = E::name(), c = C::name();
        if (c == "local") return e;
        if (e == "serial") return c;
        if (e == "openmp") return "hybrid";
        return e + "+" + c;
    }
};

template <class T>
struct is_policy : std::false_type {};
template <class E, class C>
struct is_policy<Policy<E, C>> : std::true_type {};

/// Satisfied by Policy<E, C> instantiations (and so by Serial, OpenMP, MPI, Hybrid).
template <class P>
concept PolicyType = is_policy<P>::value;

/// One thread, one process: the reference semantics.
using Serial = Policy<SerialExecutor, LocalComm>;

} // namespace pardl
