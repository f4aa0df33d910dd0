# pardl_compare on run records written here (the fields the examples' --json writes that it
# reads): the table and its CSV, and the inputs it must refuse, each with its message and exit
# code, never a hang (a FIFO) or a record overwritten by the table.
#   cmake -DPROGRAM=<pardl_compare> -DOUT=<dir> -P check_compare.cmake
foreach(var PROGRAM OUT)
    if(NOT ${var})
        message(FATAL_ERROR "check_compare.cmake needs -D${var}=...")
    endif()
endforeach()
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})

# record(FILE POLICY RANKS THREADS SECONDS): a record of two epochs of SECONDS each.
function(record file policy ranks threads seconds)
    file(WRITE ${OUT}/${file} "{\"model\": \"W-test\", \"policy\": \"${policy}\", \"ranks\": ${ranks}, \
\"threads\": ${threads}, \"train_images\": 1000, \"epoch_seconds\": [${seconds}, ${seconds}], \
\"train_loss\": [0.9, 0.5], \"test_accuracy\": [0.7, 0.8], \"samples_per_second\": 500, \
\"param_checksum\": \"00000000000000ab\"}\n")
endfunction()

# run(NAME EXPECT_CODE REGEX ARGS...): pardl_compare ARGS must exit EXPECT_CODE within 30 s, its
# stdout and stderr together matching REGEX.
function(run name expect regex)
    execute_process(COMMAND ${PROGRAM} ${ARGN} WORKING_DIRECTORY ${OUT}
                    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 30)
    if(NOT code STREQUAL "${expect}" OR NOT "${out}${err}" MATCHES "${regex}")
        message(FATAL_ERROR "${name}: exit ${code} (expected ${expect} and /${regex}/)\n${out}\n${err}")
    endif()
endfunction()

record(serial.json serial 1 1 4.0)
record(openmp.json openmp 1 2 2.5)
run("the table" 0 "serial +1x1 +4\\.000 +4\\.000 +1\\.00 +100%.*openmp +1x2 +2\\.500 +2\\.500 +1\\.60 +80%"
    --csv table.csv serial.json openmp.json)
file(READ ${OUT}/table.csv table)
if(NOT table MATCHES "\"openmp.json\",openmp,1,2,2,1000,2\\.500000,2\\.500000,1\\.6000,0\\.8000,")
    message(FATAL_ERROR "the CSV:\n${table}")
endif()

# The table over one of its own records: refused before anything is read or written.
file(READ ${OUT}/openmp.json before)
run("--csv naming a record" 2 "--csv openmp.json: it is openmp.json, a record this comparison reads"
    --csv openmp.json serial.json openmp.json)
file(READ ${OUT}/openmp.json after)
if(NOT before STREQUAL after)
    message(FATAL_ERROR "--csv naming a record changed it")
endif()
run("--csv naming a folder" 2 "--csv \\.: " --csv . serial.json)

# Records that are no records.
execute_process(COMMAND mkfifo ${OUT}/fifo.json RESULT_VARIABLE code)
if(NOT code EQUAL 0)
    message(FATAL_ERROR "mkfifo: exit ${code}")
endif()
run("a FIFO" 1 "run record 'fifo.json': unreadable: it is a FIFO, not a regular file" serial.json fifo.json)
file(MAKE_DIRECTORY ${OUT}/folder.json)
run("a folder" 1 "run record 'folder.json': unreadable: it is a directory, not a regular file" folder.json)
run("a missing file" 1 "run record 'missing.json': file not found" missing.json)
file(WRITE ${OUT}/text.json "epoch 1: 4 s\n")
run("not JSON" 1 "text.json: not valid JSON" text.json)
record(zero.json openmp 1 2 0)
run("an epoch of 0 s" 1 "zero.json: an epoch of 0\\.0+ seconds \\(each must be a positive number\\)"
    serial.json zero.json)
record(no_ranks.json mpi 0 1 2.0)
run("0 ranks" 1 "no_ranks.json: ranks 0, threads 1 \\(each must be at least 1\\)" serial.json no_ranks.json)
file(REMOVE_RECURSE ${OUT})
