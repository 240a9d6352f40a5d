// copy.hip: a GPU copy between two spans, so that both source and destination fault on the
// GPU in the same kernel (reads of one allocation, writes of another).
#include "svm_grid.h"

// dst[i] = src[i] for i < nwords. Grid-stride: each step reads one contiguous run of src and
// writes the same run of dst, front to back. The spans must not overlap.
extern "C" __global__ void svm_copy(uint32_t* dst, const uint32_t* src, uint64_t nwords)
{
    for (uint64_t i = svm_grid_thread(); i < nwords; i += svm_grid_threads())
        dst[i] = src[i];
}
