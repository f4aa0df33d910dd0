// The README's opening example (under Serial: Hybrid needs MPI's flags), built with -Wall -Wextra
// -Wpedantic -Werror. The public aggregates take designated initializers that name a few members only
// (`{.batch = 64}`), so each of their members needs a default initializer; one without it (a new
// TrainerOptions field, say) warns under -Wextra in every user's build.
#include "pardl/pardl.hpp"
#include "pardl/testing/equivalence.hpp"

using namespace pardl;
using Model = Sequential<Input<1, 28, 28>, Conv2D<32, 3, 1, 1>, ReLU, MaxPool2D<2>, Flatten, Dense<10>>;

int main() {
    Trainer<Model, SoftmaxCrossEntropy, SGD, Serial> trainer(SGD({.lr = 0.01f, .momentum = 0.9f}),
                                                             {.batch = 64});
    const Adam adam({.lr = 1e-3f});
    const TrainingProgress progress{.step = 1};
    const testing::RunSpec spec{.batch = 8};
    const EpochRecord record{.epoch = 1};
    return static_cast<int>(trainer.steps_done() + progress.step + spec.batch + record.epoch) +
           static_cast<int>(adam.learning_rate());
}
