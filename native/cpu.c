/* CPU feature detection: see cpu.h. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

static int detected = -1;

static simd_level best_supported(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return SIMD_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SIMD_AVX2;
#endif
  return SIMD_PORTABLE;
}

simd_level cpu_simd(void) {
  if (detected < 0) {
    simd_level level = best_supported();
    const char *want = getenv("LLMTS_SIMD");
    if (want) {
      simd_level asked = strcmp(want, "portable") == 0 ? SIMD_PORTABLE
                         : strcmp(want, "avx2") == 0    ? SIMD_AVX2
                                                        : SIMD_AVX512;
      if (asked < level) level = asked;
    }
    detected = (int)level;
  }
  return (simd_level)detected;
}

const char *cpu_simd_name(simd_level level) {
  switch (level) {
    case SIMD_AVX512: return "avx512";
    case SIMD_AVX2: return "avx2";
    default: return "portable";
  }
}
