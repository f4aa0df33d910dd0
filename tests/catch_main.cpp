// The shared Catch2 main for pardl's non-MPI test executables.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
