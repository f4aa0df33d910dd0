// The MPI policy: one thread per process, ranks share the batch (distributed data parallelism).
#pragma once

#if defined(PARDL_MPI_STAND_INS)
#error                                                                                                       \
    "pardl: <pardl/pardl.hpp> was included without PARDL_HAS_MPI, so MPI and Hybrid are stand-ins there: link pardl::mpi (CMake), or define PARDL_HAS_MPI=1 before every pardl include"
#endif

#include "pardl/comm/mpi_comm.hpp"
#include "pardl/policies/policy.hpp"

namespace pardl {
using MPI = Policy<SerialExecutor, MpiComm>;
} // namespace pardl
