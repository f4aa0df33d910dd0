// The OpenMP policy: threads of one process share the batch (shared-memory data parallelism).
#pragma once

#include "pardl/execution/openmp_executor.hpp"
#include "pardl/policies/policy.hpp"

namespace pardl {
using OpenMP = Policy<OpenMPExecutor, LocalComm>;
} // namespace pardl
