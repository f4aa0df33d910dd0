# Checks that --save-every keeps what a stopped run trained: PROGRAM trains 3 epochs in one run;
# a second run saves after every epoch and is stopped by an injected failure after epoch 2 (as a
# crash or a time limit would stop it); 1 epoch resumed from its checkpoint ends with the
# 3-epoch run's checksum.
#   cmake -DPROGRAM=<exe> -DOUT=<folder> "-DARGS=<flags;...>" -P check_save_every.cmake
# An MPI program runs under LAUNCH (a list, e.g. "mpiexec.mpich;-n;2") when it is given.

function(run_program label expect_ok)
    execute_process(COMMAND ${LAUNCH} ${PROGRAM} ${ARGS} ${ARGN}
                    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 300)
    if(expect_ok AND NOT code EQUAL 0)
        message(FATAL_ERROR "${label}: exit ${code}\n${out}\n${err}")
    endif()
    if(NOT expect_ok AND code EQUAL 0)
        message(FATAL_ERROR "${label}: exit 0 where the injected failure should have stopped it\n${out}")
    endif()
    string(REGEX MATCH "checksum ([0-9a-f]+)" _ "${out}")
    set(checksum_${label} "${CMAKE_MATCH_1}" PARENT_SCOPE)
    set(out_${label} "${out}" PARENT_SCOPE)
    set(err_${label} "${err}" PARENT_SCOPE)
endfunction()

file(MAKE_DIRECTORY ${OUT})
file(REMOVE ${OUT}/periodic.ckpt)
run_program(whole TRUE --epochs 3)
run_program(stopped FALSE --epochs 3 --save ${OUT}/periodic.ckpt --save-every 1 --fail-after-epoch 2)
foreach(epoch 1 2)
    if(NOT out_stopped MATCHES "checkpoint saved to [^\n]*periodic.ckpt after epoch ${epoch}\n")
        message(FATAL_ERROR "the stopped run does not report its save after epoch ${epoch}:\n${out_stopped}")
    endif()
endforeach()
if(NOT err_stopped MATCHES "injected failure after epoch 2")
    message(FATAL_ERROR "the stopped run did not stop by the injected failure:\n${err_stopped}")
endif()
run_program(resumed TRUE --epochs 1 --resume ${OUT}/periodic.ckpt)
if(NOT out_resumed MATCHES "resumed from .* after epoch 2")
    message(FATAL_ERROR "the resumed run does not say it resumed after epoch 2:\n${out_resumed}")
endif()
if(NOT checksum_whole OR NOT checksum_resumed STREQUAL checksum_whole)
    message(FATAL_ERROR "resumed from the periodic checkpoint: checksum '${checksum_resumed}', the whole run's '${checksum_whole}'")
endif()
message(STATUS "stopped after epoch 2 and resumed = whole run: checksum ${checksum_whole}")
