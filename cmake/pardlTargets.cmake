# Helpers for pardl's own examples, tests and benchmarks (top-level builds only; never installed).

# Flags for the programs we build ourselves: warnings, and -march=native when asked.
# They never enter the library's interface. pardl_warning_flags alone builds for the compiler's
# default target (plain x86-64), as a user who does not pass -march would.
add_library(pardl_warning_flags INTERFACE)
target_compile_options(pardl_warning_flags INTERFACE -Wall -Wextra -Wpedantic)
add_library(pardl_dev_flags INTERFACE)
target_link_libraries(pardl_dev_flags INTERFACE pardl_warning_flags)
if(PARDL_NATIVE)
    target_compile_options(pardl_dev_flags INTERFACE -march=native)
endif()

# pardl_add_example(NAME SOURCE POLICIES serial openmp mpi hybrid [LIBS lib...])
# builds SOURCE once per policy as NAME_<policy>, with PARDL_POLICY set to the policy type,
# each also linked (PRIVATE) to the optional LIBS.
function(pardl_add_example name source)
    cmake_parse_arguments(ARG "" "" "POLICIES;LIBS" ${ARGN})
    foreach(policy IN LISTS ARG_POLICIES)
        set(target ${name}_${policy})
        if(policy STREQUAL "serial")
            set(policy_type Serial)
            set(component pardl::pardl)
        elseif(policy STREQUAL "openmp")
            set(policy_type OpenMP)
            set(component pardl::openmp)
        elseif(policy STREQUAL "mpi")
            set(policy_type MPI)
            set(component pardl::mpi)
        elseif(policy STREQUAL "tensor")
            set(policy_type TensorParallel)
            set(component pardl::openmp)
        elseif(policy STREQUAL "hybrid")
            set(policy_type Hybrid)
            set(component pardl::openmp pardl::mpi)
        else()
            message(FATAL_ERROR "pardl_add_example: unknown policy '${policy}'")
        endif()
        add_executable(${target} ${source})
        target_link_libraries(${target} PRIVATE ${component} pardl_dev_flags ${ARG_LIBS})
        target_compile_definitions(${target} PRIVATE PARDL_POLICY=${policy_type}
            PARDL_POLICY_NAME="${policy}")
    endforeach()
endfunction()

# pardl_available_policies(OUT): the policies this build can compile (serial, and openmp / mpi /
# hybrid when OpenMP and MPI were found), for pardl_add_example's POLICIES.
function(pardl_available_policies out)
    set(policies serial)
    if(TARGET pardl_openmp)
        list(APPEND policies openmp)
    endif()
    if(TARGET pardl_mpi)
        list(APPEND policies mpi)
        if(TARGET pardl_openmp)
            list(APPEND policies hybrid)
        endif()
    endif()
    set(${out} ${policies} PARENT_SCOPE)
endfunction()
