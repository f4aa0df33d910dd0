// The Hybrid policy: ranks share the batch, and threads share each rank's part (MPI + OpenMP).
#pragma once

#include "pardl/comm/mpi_comm.hpp"
#include "pardl/execution/openmp_executor.hpp"
#include "pardl/policies/policy.hpp"

namespace pardl {
using Hybrid = Policy<OpenMPExecutor, MpiComm>;
} // namespace pardl
