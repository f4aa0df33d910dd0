# Checks that --resume continues a run exactly: PROGRAM trains 3 epochs in one run, and 2 epochs,
# a checkpoint and 1 more epoch resumed from it; both end with the same checksum and write the
# same checkpoint, byte for byte (parameters, optimizer state, counters, settings). A resume with
# another --batch, --weight-decay or other training data (--limit) must name it (Trainer::load's
# report).
#   cmake -DPROGRAM=<exe> -DOUT=<folder> "-DARGS=<flags;...>" -P check_resume.cmake
# An MPI program runs under LAUNCH (a list, e.g. "mpiexec.mpich;-n;2") when it is given.

include(${CMAKE_CURRENT_LIST_DIR}/check_runs.cmake)

file(MAKE_DIRECTORY ${OUT})
file(REMOVE ${OUT}/whole.ckpt ${OUT}/part.ckpt ${OUT}/resumed.ckpt)
run_program(whole TRUE --epochs 3 --save ${OUT}/whole.ckpt)
run_program(part TRUE --epochs 2 --save ${OUT}/part.ckpt)
run_program(resumed TRUE --epochs 1 --resume ${OUT}/part.ckpt --save ${OUT}/resumed.ckpt)

if(NOT out_resumed MATCHES "resumed from .* after epoch 2")
    message(FATAL_ERROR "the resumed run does not say where it resumed:\n${out_resumed}")
endif()
if(out_resumed MATCHES "note: checkpoint")
    message(FATAL_ERROR "a resume under the same settings reports a difference:\n${out_resumed}")
endif()
if(NOT out_resumed MATCHES "epoch +3")
    message(FATAL_ERROR "the resumed run does not number its epoch 3:\n${out_resumed}")
endif()
require_same_end("the resumed run" "${checksum_resumed}" "${checksum_whole}" ${OUT}/resumed.ckpt ${OUT}/whole.ckpt)
# Another batch size resumes all the same, and says which setting differs.
run_program(other_batch TRUE --epochs 1 --resume ${OUT}/part.ckpt --batch 32)
# (With a schedule in epochs the steps per epoch change too, and the note names the schedule after it.)
if(NOT out_other_batch MATCHES "note: checkpoint [^\n]*: batch: 64 in the checkpoint, 32 here(; schedule[^\n]*)?\\. Training goes on from it, but where settings differ not bit for bit")
    message(FATAL_ERROR "a resume with another --batch does not name it:\n${out_other_batch}")
endif()
# Another weight decay too: it reaches the optimizer, whose settings the checkpoint records.
run_program(other_decay TRUE --epochs 1 --resume ${OUT}/part.ckpt --weight-decay 0.001)
if(NOT out_other_decay MATCHES "note: checkpoint [^\n]*weight decay: 0 in the checkpoint, 0\\.001[0-9]* here")
    message(FATAL_ERROR "a resume with another --weight-decay does not name it:\n${out_other_decay}")
endif()
# Other training data (here another --limit) resumes too, and the note names it.
list(FIND ARGS "--limit" limit_at)
if(limit_at LESS 0)
    message(FATAL_ERROR "check_resume.cmake needs '--limit;N' in ARGS (N >= 2), to resume from other data")
endif()
math(EXPR value_at "${limit_at} + 1")
list(GET ARGS ${value_at} limit)
math(EXPR other_limit "${limit} - 1")
set(other_data_args ${ARGS})
list(REMOVE_AT other_data_args ${value_at})
list(INSERT other_data_args ${value_at} ${other_limit})
set(saved_args ${ARGS})
set(ARGS ${other_data_args})
run_program(other_data TRUE --epochs 1 --resume ${OUT}/part.ckpt)
set(ARGS ${saved_args})
if(NOT out_other_data MATCHES "note: checkpoint [^\n]*training data: ${limit} images, labels hash [0-9a-f]+, pixels crc32 [0-9a-f]+ in the checkpoint, ${other_limit} images, labels hash [0-9a-f]+, pixels crc32 [0-9a-f]+ here")
    message(FATAL_ERROR "a resume from other training data does not name it:\n${out_other_data}")
endif()
message(STATUS "resumed run = whole run: checksum ${checksum_whole}, identical checkpoints")
