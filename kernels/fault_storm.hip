// fault_storm.hip: writes every page of a span in a scattered order, so that many GPU faults
// on unrelated pages are in flight at once and ranges form out of address order.
#include "svm_grid.h"
#include "svm_pattern.h"

// Thread block i (grid-stride over i < npages) writes the whole of page
// p = (i * step + offset) % npages: word w of the span becomes
// svm_word(seed, generation, first_word + w). With step coprime to npages every page is written
// exactly once. step and offset are reduced modulo npages first, so i * step cannot overflow
// while npages < 2^32 (16 TiB).
extern "C" __global__ void svm_fault_storm(uint32_t* buf, uint64_t npages, uint64_t step,
                                           uint64_t offset, uint64_t first_word, uint64_t seed,
                                           uint32_t generation)
{
    if (npages == 0)
        return;
    step %= npages;
    offset %= npages;
    struct svm_pattern p = svm_pattern_at(seed, generation, first_word);
    for (uint64_t i = svm_block_id(); i < npages; i += svm_grid_blocks()) {
        uint64_t page = (i * step + offset) % npages;
        uint64_t base = page * SVM_WORDS_PER_PAGE;
        for (uint32_t w = svm_block_thread(); w < SVM_WORDS_PER_PAGE; w += svm_block_threads())
            buf[base + w] = svm_pattern_word(&p, first_word + base + w);
    }
}
