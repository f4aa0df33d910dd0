// The main of pardl's MPI test suites: MPI is initialised once, every rank runs the Catch2
// session, and the job fails if any rank failed. Only rank 0 reports successes in full.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <pardl/comm/mpi_comm.hpp>

int main(int argc, char** argv) {
    pardl::MpiEnvironment env(argc, argv);
    const int rank = pardl::MpiEnvironment::world_rank();
    Catch::Session session;
    if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
    const int failures = session.run();
    pardl::MpiComm comm;
    const std::uint64_t worst = comm.max(static_cast<std::uint64_t>(failures));
    if (rank == 0 && worst != 0 && failures == 0) std::fprintf(stderr, "a test failed on another rank\n");
    return worst == 0 ? 0 : 1;
}
