// The MPI policy: one thread per process, ranks share the batch (distributed data parallelism).
#pragma once

#include "pardl/comm/mpi_comm.hpp"
#include "pardl/policies/policy.hpp"

namespace pardl {
using MPI = Policy<SerialExecutor, MpiComm>;
} // namespace pardl
