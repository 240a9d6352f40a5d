// fill.hip: writes the pattern over a span, the way a case puts known data into memory from
// the GPU (and, on a page the GPU does not hold, the first GPU write that faults it in).
#include "svm_grid.h"
#include "svm_pattern.h"

// buf[i] = svm_word(seed, generation, first_word + i) for i < nwords. Grid-stride: at each
// step the grid writes one contiguous run of words, so the span is swept front to back.
extern "C" __global__ void svm_fill(uint32_t* buf, uint64_t nwords, uint64_t first_word,
                                    uint64_t seed, uint32_t generation)
{
    struct svm_pattern p = svm_pattern_at(seed, generation, first_word);
    for (uint64_t i = svm_grid_thread(); i < nwords; i += svm_grid_threads())
        buf[i] = svm_pattern_word(&p, first_word + i);
}
