/* CPU feature detection, done once per process: which SIMD path the kernels take. */
#ifndef LLMTS_CPU_H
#define LLMTS_CPU_H

typedef enum { SIMD_PORTABLE = 0, SIMD_AVX2 = 1, SIMD_AVX512 = 2 } simd_level;

/* The level in use: the best the CPU supports, lowered by LLMTS_SIMD=portable|avx2|avx512. */
simd_level cpu_simd(void);
const char *cpu_simd_name(simd_level level);

#endif
