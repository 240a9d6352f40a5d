// atomic_inc.hip: system-scope atomics on counters that the series may have moved to VRAM or
// left in system memory, while the CPU may be incrementing the same counters: a lost update
// shows as a counter short of its expected total.
#include "svm_grid.h"

// Adds 1 to counters[c] `iterations` times, one relaxed system-scope atomic add per increment,
// for every c < ncounters (wrapping at 2^32). One thread per counter, grid-stride.
extern "C" __global__ void svm_atomic_inc(uint32_t* counters, uint64_t ncounters,
                                          uint32_t iterations)
{
    for (uint64_t c = svm_grid_thread(); c < ncounters; c += svm_grid_threads())
        for (uint32_t it = 0; it < iterations; it++)
            svm_atomic_add_u32(&counters[c], 1u);
}
