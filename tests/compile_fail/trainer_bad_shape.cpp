// Must NOT compile: the README's shape error (Dense on a 1x28x28 image) inside a Trainer,
// (-DPARDL_NO_LAYERS) a model with nothing after Input, (-DPARDL_ZERO_INPUT) an input dimension of
// 0, (-DPARDL_CONV_ON_FLAT) a convolution on flat input, and (-DPARDL_ZERO_DENSE and the other
// PARDL_ZERO_ cases) a layer with a size or stride of 0; each must give exactly one error.
// With -DPARDL_CONTROL a Flatten makes the model valid and it must build.
#include "pardl/pardl.hpp"

#if defined(PARDL_CONTROL)
using Model = pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_NO_LAYERS)
using Model = pardl::Sequential<pardl::Input<784>>;
#elif defined(PARDL_ZERO_INPUT)
using Model = pardl::Sequential<pardl::Input<1, 0, 28>, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_CONV_ON_FLAT)
using Model =
    pardl::Sequential<pardl::Input<784>, pardl::Conv2D<8, 3>, pardl::ReLU, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_ZERO_DENSE)
using Model = pardl::Sequential<pardl::Input<784>, pardl::Dense<0>, pardl::ReLU, pardl::Dense<10>>;
#elif defined(PARDL_ZERO_DENSE_LAST)
using Model = pardl::Sequential<pardl::Input<784>, pardl::Dense<0>>;
#elif defined(PARDL_ZERO_CHANNELS)
using Model =
    pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Conv2D<0, 3>, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_ZERO_STRIDE)
using Model =
    pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Conv2D<8, 3, 0>, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_ZERO_POOL)
using Model =
    pardl::Sequential<pardl::Input<1, 28, 28>, pardl::MaxPool2D<0>, pardl::Flatten, pardl::Dense<10>>;
#elif defined(PARDL_ZERO_AVG_POOL)
using Model =
    pardl::Sequential<pardl::Input<1, 28, 28>, pardl::AvgPool2D<0>, pardl::Flatten, pardl::Dense<10>>;
#else
using Model = pardl::Sequential<pardl::Input<1, 28, 28>, pardl::Dense<10>>;
#endif

int main() {
    pardl::Trainer<Model, pardl::SoftmaxCrossEntropy, pardl::SGD> trainer(pardl::SGD{}, {});
    return static_cast<int>(trainer.workers() % 2);
}
