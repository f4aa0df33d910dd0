# Checks that --save-every keeps what a stopped run trained. PROGRAM trains 3 epochs in one run.
# Two more runs are stopped by an injected failure, as a crash or a time limit would stop them:
# one saving after every epoch, stopped after epoch 2; one saving after every 2 epochs, stopped
# after epoch 3 (its last epoch, before the final save), so its checkpoint is epoch 2's and epoch 1
# wrote none. One epoch resumed from each checkpoint ends with the 3-epoch run's checksum and
# writes the same checkpoint, byte for byte. Last, the same for a job resubmitted with one command line
# (--auto-resume, --total-epochs).
#   cmake -DPROGRAM=<exe> -DOUT=<folder> "-DARGS=<flags;...>" -P check_save_every.cmake
# An MPI program runs under LAUNCH (a list, e.g. "mpiexec.mpich;-n;2") when it is given.

include(${CMAKE_CURRENT_LIST_DIR}/check_runs.cmake)

# stopped_run(label every stop_after saved_epochs unsaved_epochs): the stopped run and its resume.
function(stopped_run label every stop_after saved unsaved)
    set(ckpt ${OUT}/${label}.ckpt)
    file(REMOVE ${ckpt} ${OUT}/${label}_resumed.ckpt)
    run_program(stopped FALSE --epochs 3 --save ${ckpt} --save-every ${every} --fail-after-epoch ${stop_after})
    foreach(epoch ${saved})
        if(NOT out_stopped MATCHES "checkpoint saved to [^\n]*${label}.ckpt after epoch ${epoch}\n")
            message(FATAL_ERROR "${label}: no save reported after epoch ${epoch}:\n${out_stopped}")
        endif()
    endforeach()
    foreach(epoch ${unsaved})
        if(out_stopped MATCHES "after epoch ${epoch}\n")
            message(FATAL_ERROR "${label}: a save after epoch ${epoch}, which --save-every ${every} skips:\n${out_stopped}")
        endif()
    endforeach()
    if(NOT err_stopped MATCHES "injected failure on rank [0-9]+ after epoch ${stop_after}")
        message(FATAL_ERROR "${label}: the run did not stop by the injected failure:\n${err_stopped}")
    endif()
    run_program(resumed TRUE --epochs 1 --resume ${ckpt} --save ${OUT}/${label}_resumed.ckpt)
    if(NOT out_resumed MATCHES "resumed from .* after epoch 2")
        message(FATAL_ERROR "${label}: the resumed run does not say it resumed after epoch 2:\n${out_resumed}")
    endif()
    require_same_end("${label}, resumed" "${checksum_resumed}" "${checksum_whole}" ${OUT}/${label}_resumed.ckpt
                     ${OUT}/whole.ckpt)
endfunction()

file(MAKE_DIRECTORY ${OUT})
file(REMOVE ${OUT}/whole.ckpt)
run_program(whole TRUE --epochs 3 --save ${OUT}/whole.ckpt)
stopped_run(every1 1 2 "1;2" "")
stopped_run(every2 2 3 "2" "1;3")

# A job that a batch system stops and resubmits with one command line: the first submission finds
# no checkpoint and starts afresh, and is stopped after epoch 2; the second resumes from the
# checkpoint and finishes the 3 epochs; a third has nothing left to train.
set(job --total-epochs 3 --save ${OUT}/job.ckpt --save-every 1 --auto-resume)
file(REMOVE ${OUT}/job.ckpt)
run_program(first FALSE ${job} --fail-after-epoch 2)
if(out_first MATCHES "resumed from")
    message(FATAL_ERROR "the first submission resumed, with no checkpoint there:\n${out_first}")
endif()
run_program(second TRUE ${job})
if(NOT out_second MATCHES "resumed from [^\n]*job.ckpt after epoch 2")
    message(FATAL_ERROR "the resubmitted job did not resume after epoch 2:\n${out_second}")
endif()
require_same_end("the resubmitted job" "${checksum_second}" "${checksum_whole}" ${OUT}/job.ckpt ${OUT}/whole.ckpt)
run_program(third TRUE ${job})
if(NOT out_third MATCHES "nothing to train: 3 epochs done, --total-epochs 3" OR NOT checksum_third STREQUAL checksum_whole)
    message(FATAL_ERROR "a finished job, resubmitted, did not stop with its checksum:\n${out_third}")
endif()
message(STATUS "stopped runs resumed, and a resubmitted job = whole run: checksum ${checksum_whole}, identical checkpoints")
