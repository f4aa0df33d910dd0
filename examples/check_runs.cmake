# What check_resume.cmake and check_save_every.cmake share: running PROGRAM (under LAUNCH, a list
# such as "mpiexec.mpich;-n;2", when given) with ARGS and more flags, and comparing a resumed run
# with the uninterrupted one.

# run_program(label expect_ok flag...): expect_ok TRUE wants exit 0, FALSE a failure. Sets
# out_<label>, err_<label> and checksum_<label> (the printed parameter checksum, if any).
function(run_program label expect_ok)
    execute_process(COMMAND ${LAUNCH} ${PROGRAM} ${ARGS} ${ARGN}
                    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
    if(expect_ok AND NOT code EQUAL 0)
        message(FATAL_ERROR "${label}: exit ${code}\n${out}\n${err}")
    endif()
    if(NOT expect_ok AND code EQUAL 0)
        message(FATAL_ERROR "${label}: exit 0 where it should have failed\n${out}")
    endif()
    string(REGEX MATCH "checksum ([0-9a-f]+)" _ "${out}")
    if(expect_ok AND NOT CMAKE_MATCH_1)
        message(FATAL_ERROR "${label}: no checksum in its output\n${out}")
    endif()
    set(checksum_${label} "${CMAKE_MATCH_1}" PARENT_SCOPE)
    set(out_${label} "${out}" PARENT_SCOPE)
    set(err_${label} "${err}" PARENT_SCOPE)
endfunction()

# require_same_end(what checksum expected_checksum checkpoint expected_checkpoint): the resumed
# run (`what`) ended with the uninterrupted run's checksum and wrote the same checkpoint, byte for
# byte (parameters, optimizer state, counters, settings).
function(require_same_end what checksum expected checkpoint expected_checkpoint)
    if(NOT checksum STREQUAL expected)
        message(FATAL_ERROR "${what} ends with checksum '${checksum}', the uninterrupted run with '${expected}'")
    endif()
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${expected_checkpoint} ${checkpoint}
                    RESULT_VARIABLE differ)
    if(NOT differ EQUAL 0)
        message(FATAL_ERROR "${what}: its checkpoint differs from the uninterrupted run's")
    endif()
endfunction()
