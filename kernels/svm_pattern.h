/*
 * svm_pattern.h: the word pattern every kernel writes and checks, the same formula as
 * src/model/pattern.rs (`key`, `mix`, `word`), for device code and for plain host C or C++.
 *
 * Each 32-bit word is a function of (seed, generation, allocation-relative word index) that
 * differs between every word, page and generation, so a wrong word tells which word of which
 * generation it was. tests/kernels.rs compiles this header into a host program and compares
 * it with the Rust formula, including indices past 2^32.
 */
#ifndef SVM_PATTERN_H
#define SVM_PATTERN_H

#include <stdint.h>

/* Device code needs the functions on both sides; a host compiler has no such attributes, and
 * the host path must not need the HIP headers. */
#if defined(__HIP__) || defined(__CUDACC__)
/* Defined by the HIP wrapper or headers; a -nogpuinc build has neither. */
#ifndef __host__
#define __host__ __attribute__((host))
#endif
#ifndef __device__
#define __device__ __attribute__((device))
#endif
#define SVM_HD __host__ __device__
#else
#define SVM_HD
#endif

/* Multipliers of the two mixing steps, odd so that the mix is invertible modulo 2^32. */
#define SVM_M1 0x9E3779B1u
#define SVM_M2 0x85EBCA6Bu

/* The per-(seed, generation, 16 GiB block) key: splitmix64 of the three, folded to 32 bits. */
SVM_HD static inline uint32_t svm_key(uint64_t seed, uint32_t generation, uint32_t block)
{
    uint64_t z = seed ^ ((((uint64_t)generation << 32) | (uint64_t)block) *
                         0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)(z ^ (z >> 32));
}

/* The low 32 bits of the word index mixed with the key, a bijection on uint32_t. */
SVM_HD static inline uint32_t svm_mix(uint32_t key, uint32_t low)
{
    uint32_t x = low ^ key;
    x *= SVM_M1;
    x ^= x >> 16;
    /* The key again after a non-linear step, so no two generations are the same pages. */
    x += (key << 16) | (key >> 16);
    x *= SVM_M2;
    x ^= x >> 13;
    return x;
}

/* The word at allocation-relative word `index` of `generation` under `seed`. */
SVM_HD static inline uint32_t svm_word(uint64_t seed, uint32_t generation, uint64_t index)
{
    return svm_mix(svm_key(seed, generation, (uint32_t)(index >> 32)), (uint32_t)index);
}

/*
 * A pattern with the key of its current 16 GiB block remembered. The key costs three 64-bit
 * multiplies and changes only every 2^32 words, so a grid-stride loop computes it once per
 * thread instead of once per word; the words are exactly svm_word's.
 */
struct svm_pattern {
    uint64_t seed;
    uint32_t generation;
    uint32_t block;
    uint32_t key;
};

/* A pattern whose remembered key is the one of word `index`'s block. */
SVM_HD static inline struct svm_pattern svm_pattern_at(uint64_t seed, uint32_t generation,
                                                       uint64_t index)
{
    struct svm_pattern p;
    p.seed = seed;
    p.generation = generation;
    p.block = (uint32_t)(index >> 32);
    p.key = svm_key(seed, generation, p.block);
    return p;
}

/* svm_word(p->seed, p->generation, index), recomputing the key only when the block changes. */
SVM_HD static inline uint32_t svm_pattern_word(struct svm_pattern *p, uint64_t index)
{
    uint32_t block = (uint32_t)(index >> 32);
    if (block != p->block) {
        p->block = block;
        p->key = svm_key(p->seed, p->generation, block);
    }
    return svm_mix(p->key, (uint32_t)index);
}

#endif /* SVM_PATTERN_H */
