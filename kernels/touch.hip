// touch.hip: strided page touches, the cheapest way to make the GPU fault a chosen set of
// pages: a read of one word per page, or a write of whole pages.
#include "svm_grid.h"
#include "svm_pattern.h"

// Pages touched out of npages: 0, stride_pages, 2 * stride_pages, ... (none when the stride
// is 0, which is not a stride).
__device__ static inline uint64_t svm_touched_pages(uint64_t npages, uint64_t stride_pages)
{
    return stride_pages == 0 ? 0 : (npages + stride_pages - 1) / stride_pages;
}

// Reads word 0 of pages 0, stride_pages, 2 * stride_pages, ... below npages and adds them all
// (as unsigned 64-bit, wrapping) into *sum. One thread per touched page, so a grid that covers
// them faults every page at once; each thread adds its partial sum with one atomic.
extern "C" __global__ void svm_touch_read(const uint32_t* buf, uint64_t npages,
                                          uint64_t stride_pages, unsigned long long* sum)
{
    uint64_t touched = svm_touched_pages(npages, stride_pages);
    unsigned long long partial = 0;
    bool read = false;
    for (uint64_t t = svm_grid_thread(); t < touched; t += svm_grid_threads()) {
        partial += buf[t * stride_pages * SVM_WORDS_PER_PAGE];
        read = true;
    }
    if (read)
        svm_atomic_add_u64(sum, partial);
}

// Writes svm_word(seed, generation, first_word + w) over every word w of pages 0,
// stride_pages, 2 * stride_pages, ... below npages; the pages between keep their contents.
// Grid-stride over the touched pages' words laid end to end, so consecutive threads write
// consecutive words of one page.
extern "C" __global__ void svm_touch_write(uint32_t* buf, uint64_t npages, uint64_t stride_pages,
                                           uint64_t first_word, uint64_t seed,
                                           uint32_t generation)
{
    uint64_t nwords = svm_touched_pages(npages, stride_pages) * SVM_WORDS_PER_PAGE;
    struct svm_pattern p = svm_pattern_at(seed, generation, first_word);
    for (uint64_t e = svm_grid_thread(); e < nwords; e += svm_grid_threads()) {
        uint64_t page = e / SVM_WORDS_PER_PAGE * stride_pages;
        uint64_t w = page * SVM_WORDS_PER_PAGE + e % SVM_WORDS_PER_PAGE;
        buf[w] = svm_pattern_word(&p, first_word + w);
    }
}
