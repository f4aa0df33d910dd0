# Only rank 0 reads and writes files. A job whose other ranks run where rank 0's files are not
# (here another working directory, as on a node that shares no filesystem with rank 0's node)
# resumes from rank 0's checkpoint and writes every output beside it, with every rank's events in
# the one trace, and touches nothing on the other side.
#   cmake -DPROGRAM=<an MPI example> -DMPIEXEC=mpiexec.mpich -DNP_FLAG=-n -DOUT=<dir>
#         -P check_rank0_files.cmake
foreach(var PROGRAM MPIEXEC NP_FLAG OUT)
    if(NOT ${var})
        message(FATAL_ERROR "check_rank0_files.cmake needs -D${var}=...")
    endif()
endforeach()
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT}/node0 ${OUT}/node1)
set(args --limit 300 --test-limit 100 --epochs 1 --quiet)

# A checkpoint on rank 0's side only (one process alone, no launcher).
execute_process(COMMAND ${PROGRAM} ${args} --save first.ckpt WORKING_DIRECTORY ${OUT}/node0
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT code EQUAL 0 OR NOT EXISTS ${OUT}/node0/first.ckpt)
    message(FATAL_ERROR "the first run: exit ${code}\n${out}\n${err}")
endif()

# The same relative paths on both ranks; -wdir puts each rank in its own directory.
set(flags ${args} --resume first.ckpt --save second.ckpt --json run.json --timeline trace.json)
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} 1 -wdir ${OUT}/node0 ${PROGRAM} ${flags}
                        : ${NP_FLAG} 1 -wdir ${OUT}/node1 ${PROGRAM} ${flags}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT code EQUAL 0)
    message(FATAL_ERROR "the resumed run on two ranks: exit ${code}\n${out}\n${err}")
endif()
if(NOT out MATCHES "resumed from first.ckpt")
    message(FATAL_ERROR "the resumed run did not say that it resumed\n${out}\n${err}")
endif()
foreach(f second.ckpt run.json trace.json)
    if(NOT EXISTS ${OUT}/node0/${f})
        message(FATAL_ERROR "rank 0 wrote no ${f}\n${out}\n${err}")
    endif()
endforeach()
file(READ ${OUT}/node0/trace.json trace)
foreach(rank 0 1)
    if(NOT trace MATCHES "\"pid\":${rank},\"tid\":0}")
        message(FATAL_ERROR "the trace holds no events of rank ${rank}")
    endif()
endforeach()
file(GLOB left ${OUT}/node1/*)
if(left)
    message(FATAL_ERROR "rank 1 wrote files in its own directory: ${left}")
endif()
file(GLOB node0 RELATIVE ${OUT}/node0 ${OUT}/node0/*)
list(SORT node0)
if(NOT node0 STREQUAL "first.ckpt;run.json;second.ckpt;trace.json")
    message(FATAL_ERROR "rank 0's directory holds ${node0}, not the checkpoints, the run record and the trace")
endif()
