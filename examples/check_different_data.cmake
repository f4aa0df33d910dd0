# Ranks that read different images stop before training, all together, naming the data: one pixel
# of the training images (the trainer's "training data" setting, which holds a CRC-32 of the
# pixels beside a hash of the labels) or of the test images (the examples' own check), with the
# image counts and labels unchanged.
#   cmake -DPROGRAM=<an MPI example> -DMPIEXEC=mpiexec.mpich -DNP_FLAG=-n -DDATA=<Fashion-MNIST dir>
#         -DOUT=<dir> -P check_different_data.cmake
foreach(var PROGRAM MPIEXEC NP_FLAG DATA OUT)
    if(NOT ${var})
        message(FATAL_ERROR "check_different_data.cmake needs -D${var}=...")
    endif()
endforeach()
set(args --limit 300 --test-limit 100 --epochs 1 --quiet)
set(files train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

# changed_copy(NAME [FILE]): OUT/NAME holds the data set uncompressed (the reader takes plain IDX
# files too), with the first pixel of FILE's first image, if one is named, changed: set to 0x80,
# or to 0x7f where it was 0x80 already.
function(changed_copy name)
    set(changed ${ARGN})
    file(REMOVE_RECURSE ${OUT}/${name})
    file(MAKE_DIRECTORY ${OUT}/${name})
    foreach(f ${files})
        execute_process(COMMAND gzip -dc ${DATA}/${f}.gz OUTPUT_FILE ${OUT}/${name}/${f} RESULT_VARIABLE code)
        if(NOT code EQUAL 0)
            message(FATAL_ERROR "gzip -dc ${DATA}/${f}.gz: exit ${code}")
        endif()
    endforeach()
    if(NOT changed)
        return()
    endif()
    # The IDX header of an image file is 16 bytes; the first pixel follows it.
    file(READ ${OUT}/${name}/${changed} pixel OFFSET 16 LIMIT 1 HEX)
    if(pixel STREQUAL "80")
        set(octal 177)
    else()
        set(octal 200)
    endif()
    execute_process(COMMAND sh -c "printf '\\${octal}' | dd of='${OUT}/${name}/${changed}' bs=1 seek=16 conv=notrunc 2>/dev/null"
                    RESULT_VARIABLE code)
    file(READ ${OUT}/${name}/${changed} after OFFSET 16 LIMIT 1 HEX)
    if(NOT code EQUAL 0 OR after STREQUAL pixel)
        message(FATAL_ERROR "could not change a pixel of ${OUT}/${name}/${changed} (0x${pixel} -> 0x${after})")
    endif()
endfunction()

# expect_stop(NAME REGEX): rank 0 reads DATA, rank 1 OUT/NAME; the job ends with exit 2 and the
# message, which each rank prints with its own fingerprint (either may end the job first).
function(expect_stop name regex)
    execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} 1 ${PROGRAM} ${args} --data ${DATA}
                            : ${NP_FLAG} 1 ${PROGRAM} ${args} --data ${OUT}/${name}
                    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
    if(NOT code EQUAL 2 OR NOT err MATCHES "${regex}" OR out MATCHES "final test accuracy")
        message(FATAL_ERROR "ranks given ${name}: exit ${code} (expected 2 and /${regex}/ on stderr)\n${out}\n${err}")
    endif()
endfunction()

changed_copy(other_training_pixel train-images-idx3-ubyte)
expect_stop(other_training_pixel
            "\\[rank [01]\\] error: the ranks were given different settings: training data \\(this rank: 300 images, labels hash [0-9a-f]+, pixels crc32 [0-9a-f]+\\)")
changed_copy(other_test_pixel t10k-images-idx3-ubyte)
expect_stop(other_test_pixel
            "\\[rank [01]\\] error: the ranks were given different data: test data \\(this rank: 100 images, labels hash [0-9a-f]+, pixels crc32 [0-9a-f]+\\)")
# The control: the same data, uncompressed on one rank, trains.
changed_copy(same)
execute_process(COMMAND ${MPIEXEC} ${NP_FLAG} 1 ${PROGRAM} ${args} --data ${DATA}
                        : ${NP_FLAG} 1 ${PROGRAM} ${args} --data ${OUT}/same
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
if(NOT code EQUAL 0 OR NOT out MATCHES "final test accuracy")
    message(FATAL_ERROR "ranks given the same data, one uncompressed: exit ${code}\n${out}\n${err}")
endif()
file(REMOVE_RECURSE ${OUT})
