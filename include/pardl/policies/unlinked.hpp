// Stand-ins for the policies whose component this build does not have, so that naming one gives
// a sentence saying what to link instead of "'OpenMP' was not declared in this scope".
// pardl/pardl.hpp declares OpenMP and TensorParallel with them when the compiler has no OpenMP,
// MPI and Hybrid when PARDL_HAS_MPI is not defined; a Trainer built with one stops with the
// sentence (train/trainer.hpp). They run nothing: they are Serial's parts, marked.
#pragma once

#include "pardl/policies/policy.hpp"

namespace pardl::detail {

/// Where OpenMP's threads would be: Serial's executor, marked as missing.
struct OpenMPNotCompiledIn : SerialExecutor {
    using SerialExecutor::SerialExecutor;
    static constexpr bool missing_openmp = true;
};

/// Where MPI's ranks would be: the one-process communicator, marked as missing.
struct MpiNotLinked : LocalComm {
    static constexpr bool missing_mpi = true;
};

} // namespace pardl::detail
