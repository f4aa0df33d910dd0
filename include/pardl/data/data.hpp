// Umbrella header of pardl's data layer: Dataset and Batch, the IDX (Fashion-MNIST) and CIFAR-10
// readers, the synthetic generators and file writers, and the deterministic BatchLoader.
#pragma once

#include "pardl/data/cifar10.hpp"
#include "pardl/data/dataset.hpp"
#include "pardl/data/idx.hpp"
#include "pardl/data/loader.hpp"
#include "pardl/data/synthetic.hpp"
