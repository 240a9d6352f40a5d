/*
 * svm_grid.h: where a thread is in a one-dimensional grid, and the atomics the kernels use,
 * from compiler builtins only.
 *
 * threadIdx, blockIdx and the atomic functions of the HIP headers call into the device
 * libraries (__ockl_*), which a code object built with -nogpulib does not link; the amdgcn
 * builtins and the clang atomic builtins need nothing, so the same sources build with hipcc
 * and with a bare clang (kernels/README.md has both command lines).
 */
#ifndef SVM_GRID_H
#define SVM_GRID_H

#include <stdint.h>

/* Clang's HIP wrapper and the HIP headers define these; a build with -nogpuinc (no ROCm
 * installed at all) has neither, and the plain attributes are what they stand for. */
#ifndef __global__
#define __global__ __attribute__((global))
#endif
#ifndef __device__
#define __device__ __attribute__((device))
#endif

/* Words in one 4 KiB page: the migration granule, and the unit of the page kernels. */
#define SVM_WORDS_PER_PAGE 1024u

/* This thread's index in its block. */
__device__ static inline uint32_t svm_block_thread(void)
{
    return __builtin_amdgcn_workitem_id_x();
}

/* Threads in one block, as launched (kernels read it rather than assume 256). */
__device__ static inline uint32_t svm_block_threads(void)
{
    return __builtin_amdgcn_workgroup_size_x();
}

/* This block's index in the grid. */
__device__ static inline uint32_t svm_block_id(void)
{
    return __builtin_amdgcn_workgroup_id_x();
}

/* Blocks in the grid; the grid size builtin counts threads, not blocks. */
__device__ static inline uint32_t svm_grid_blocks(void)
{
    uint32_t threads = svm_block_threads();
    return (__builtin_amdgcn_grid_size_x() + threads - 1) / threads;
}

/* This thread's index in the whole grid, the start of its grid-stride loop. */
__device__ static inline uint64_t svm_grid_thread(void)
{
    return (uint64_t)svm_block_id() * svm_block_threads() + svm_block_thread();
}

/* Threads in the whole grid, the step of a grid-stride loop. */
__device__ static inline uint64_t svm_grid_threads(void)
{
    return (uint64_t)__builtin_amdgcn_grid_size_x();
}

/*
 * Atomics at system scope: the target word may live in VRAM or, mapped in place, in system
 * memory that the CPU reads, and the result must be right wherever the series put the page.
 */
__device__ static inline void svm_atomic_add_u64(unsigned long long *p, unsigned long long v)
{
    __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_SYSTEM);
}

__device__ static inline void svm_atomic_min_u64(unsigned long long *p, unsigned long long v)
{
    __hip_atomic_fetch_min(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_SYSTEM);
}

__device__ static inline void svm_atomic_add_u32(uint32_t *p, uint32_t v)
{
    __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_SYSTEM);
}

#endif /* SVM_GRID_H */
