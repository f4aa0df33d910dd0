// The TensorParallel policy: the threads of one process split every layer of the model between
// them instead of the batch (shared-memory model parallelism; see TensorParallelExecutor).
// Policy<TensorParallelExecutor, MpiComm> adds data parallelism over ranks on top ("tensor+mpi").
#pragma once

#include "pardl/execution/tensor_parallel_executor.hpp"
#include "pardl/policies/policy.hpp"

namespace pardl {
using TensorParallel = Policy<TensorParallelExecutor, LocalComm>;
} // namespace pardl
