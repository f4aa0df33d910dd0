// The rank and job size a launcher (mpiexec) gave this process, read from the environment it
// sets, so that code which runs before MPI starts, or without it, can tell rank 0 from the others:
// MPICH's hydra and most PMI launchers set PMI_RANK and PMI_SIZE, Open MPI OMPI_COMM_WORLD_*,
// PMIx launchers PMIX_*.
#pragma once

#include <charconv>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <system_error>

namespace pardl::detail {

/// The first of the launcher's variables `names` that holds an integer, else `otherwise`.
inline int launcher_variable(std::initializer_list<const char*> names, int otherwise) {
    for (const char* name : names) {
        if (const char* v = std::getenv(name)) {
            int value = 0;
            const auto [p, ec] = std::from_chars(v, v + std::char_traits<char>::length(v), value);
            if (ec == std::errc{}) return value;
        }
    }
    return otherwise;
}

inline int launcher_rank() {
    return launcher_variable({"PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"}, 0);
}

inline int launcher_size() {
    return launcher_variable({"PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"}, 1);
}

/// Whether this process speaks for its job: rank 0 under a launcher, and a process alone always
/// (a stray PMI_RANK left in its environment must not silence it).
inline bool speaks_for_job() {
    return launcher_rank() == 0 || launcher_size() <= 1;
}

} // namespace pardl::detail
