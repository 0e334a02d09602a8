/* CPU feature detection, done once per process: which SIMD path the kernels take. */
#ifndef LLMTS_CPU_H
#define LLMTS_CPU_H

typedef enum { SIMD_PORTABLE = 0, SIMD_AVX2 = 1, SIMD_AVX512 = 2 } simd_level;

/* The level in use: the best the CPU supports, lowered by LLMTS_SIMD=portable|avx2|avx512. */
simd_level cpu_simd(void);
const char *cpu_simd_name(simd_level level);

/* The bf16 product instructions (gemm_bf16.c), checked once each: AVX512-BF16 (vdpbf16ps; cpuid
 * leaf 7 subleaf 1 EAX bit 5, with AVX-512 enabled and not lowered by LLMTS_SIMD), and AMX tiles
 * with bf16 (leaf 7 EDX bits 22 and 24, and on Linux the tile state granted by
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), which cpu_has_amx_bf16 requests). */
int cpu_has_avx512bf16(void);
int cpu_has_amx_bf16(void);

#endif
