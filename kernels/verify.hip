// verify.hip: checks a span against the pattern on the GPU, so that data which went to VRAM
// is checked where it is, without a migration back to system memory to read it.
#include "svm_grid.h"
#include "svm_pattern.h"

// Adds the number of words i < nwords with buf[i] != svm_word(seed, generation, first_word + i)
// to result[0], and takes the lowest such first_word + i into result[1] by atomic min; the
// caller sets result[0] = 0 and result[1] = UINT64_MAX first. Each thread counts its own words
// and issues its two atomics once at the end, only when it saw a bad word.
extern "C" __global__ void svm_verify(const uint32_t* buf, uint64_t nwords, uint64_t first_word,
                                      uint64_t seed, uint32_t generation,
                                      unsigned long long* result)
{
    struct svm_pattern p = svm_pattern_at(seed, generation, first_word);
    unsigned long long bad = 0;
    unsigned long long first_bad = ~0ull;
    // A thread's indices only grow, so its first bad word is its lowest.
    for (uint64_t i = svm_grid_thread(); i < nwords; i += svm_grid_threads()) {
        if (buf[i] != svm_pattern_word(&p, first_word + i)) {
            if (bad == 0)
                first_bad = first_word + i;
            bad++;
        }
    }
    if (bad != 0) {
        svm_atomic_add_u64(&result[0], bad);
        svm_atomic_min_u64(&result[1], first_bad);
    }
}
