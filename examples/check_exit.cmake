# Runs a command and checks how it ended, for the examples' CTest smoke tests.
#   cmake [-D<var>=<value>...] -P check_exit.cmake -- <command> [args...]
# Variables (all optional):
#   EXPECT_CODE    exact exit code expected, or "nonzero" (default 0)
#   STDERR_REGEX   stderr must match this regex
#   STDOUT_REGEX   stdout must match this regex
#   ONCE_REGEX     stdout+stderr must match this regex exactly once
#   REMOVE_FILE    deleted before the command runs
#   FILE_EXISTS    must exist afterwards
#   FILE_REGEX     the content of FILE_EXISTS must match this regex
#   MAX_SECONDS    the command must end within this many seconds (it is killed after twice that)
#   WORKING_DIR    directory the command runs in

set(cmd)
set(after_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 0 ${last})
    if(after_dashes)
        list(APPEND cmd "${CMAKE_ARGV${i}}")
    elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
        set(after_dashes TRUE)
    endif()
endforeach()
if(NOT cmd)
    message(FATAL_ERROR "check_exit.cmake: no command after --")
endif()
if(NOT DEFINED EXPECT_CODE)
    set(EXPECT_CODE 0)
endif()
if(NOT WORKING_DIR)
    set(WORKING_DIR "${CMAKE_CURRENT_BINARY_DIR}")
endif()
if(REMOVE_FILE)
    file(REMOVE "${REMOVE_FILE}")
endif()

set(timeout_args)
if(MAX_SECONDS)
    math(EXPR kill_after "${MAX_SECONDS} * 2")
    set(timeout_args TIMEOUT ${kill_after})
endif()

string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${cmd}
    WORKING_DIRECTORY "${WORKING_DIR}"
    RESULT_VARIABLE rc
    OUTPUT_VARIABLE out
    ERROR_VARIABLE err
    ${timeout_args})
string(TIMESTAMP t1 "%s")
math(EXPR elapsed "${t1} - ${t0}")

string(REPLACE ";" " " cmd_text "${cmd}")
message(STATUS "command: ${cmd_text}")
message(STATUS "exit: ${rc} after ${elapsed} s")
message(STATUS "stdout:\n${out}")
message(STATUS "stderr:\n${err}")

set(failures)
if(EXPECT_CODE STREQUAL "nonzero")
    if(NOT rc MATCHES "^[0-9]+$" OR rc EQUAL 0)
        list(APPEND failures "expected a non-zero exit code, got '${rc}'")
    endif()
elseif(NOT "${rc}" STREQUAL "${EXPECT_CODE}")
    list(APPEND failures "expected exit code ${EXPECT_CODE}, got '${rc}'")
endif()
if(DEFINED STDERR_REGEX AND NOT err MATCHES "${STDERR_REGEX}")
    list(APPEND failures "stderr does not match '${STDERR_REGEX}'")
endif()
if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
    list(APPEND failures "stdout does not match '${STDOUT_REGEX}'")
endif()
if(DEFINED ONCE_REGEX)
    string(REGEX MATCHALL "${ONCE_REGEX}" hits "${out}${err}")
    list(LENGTH hits n)
    if(NOT n EQUAL 1)
        list(APPEND failures "'${ONCE_REGEX}' appears ${n} times in the output, expected once")
    endif()
endif()
if(MAX_SECONDS AND elapsed GREATER MAX_SECONDS)
    list(APPEND failures "took ${elapsed} s, more than ${MAX_SECONDS} s")
endif()
if(FILE_EXISTS)
    if(NOT EXISTS "${FILE_EXISTS}")
        list(APPEND failures "file '${FILE_EXISTS}' was not written")
    elseif(DEFINED FILE_REGEX)
        file(READ "${FILE_EXISTS}" content)
        if(NOT content MATCHES "${FILE_REGEX}")
            list(APPEND failures "file '${FILE_EXISTS}' does not match '${FILE_REGEX}'")
        endif()
    endif()
endif()

if(failures)
    foreach(f IN LISTS failures)
        message(SEND_ERROR "check failed: ${f}")
    endforeach()
    message(FATAL_ERROR "command: ${cmd_text}")
endif()
