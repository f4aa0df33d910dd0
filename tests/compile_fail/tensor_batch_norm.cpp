// Must NOT compile: TensorParallel needs every layer with parameters past the row-wise prefix to
// split by its inputs (Dense), and batch norm cannot (nor can it share the batch by rows: its
// statistics span the batch). With -DPARDL_CONTROL the same model under OpenMP must build.
#include "pardl/layers/batch_norm.hpp"
#include "pardl/layers/conv2d.hpp"
#include "pardl/layers/dense.hpp"
#include "pardl/layers/flatten.hpp"
#include "pardl/losses/softmax_cross_entropy.hpp"
#include "pardl/model/sequential.hpp"
#include "pardl/optimizers/sgd.hpp"
#include "pardl/policies/openmp.hpp"
#include "pardl/policies/tensor_parallel.hpp"
#include "pardl/train/trainer.hpp"

using Model = pardl::Sequential<pardl::Input<1, 8, 8>, pardl::Conv2D<4, 3>, pardl::BatchNorm<>,
                                pardl::Flatten, pardl::Dense<10>>;
#if defined(PARDL_CONTROL)
using Policy = pardl::OpenMP;
#else
using Policy = pardl::TensorParallel;
#endif

int main() {
    pardl::Trainer<Model, pardl::SoftmaxCrossEntropy, pardl::SGD, Policy> trainer(pardl::SGD{}, {});
    return static_cast<int>(trainer.workers() % 2);
}
