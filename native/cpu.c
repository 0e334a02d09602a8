/* CPU feature detection: see cpu.h. */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* leaf 7, the given subleaf: registers in r[0..3] = eax, ebx, ecx, edx (all 0 when absent) */
static void cpuid7(unsigned subleaf, unsigned r[4]) {
  r[0] = r[1] = r[2] = r[3] = 0;
  if (__get_cpuid_max(0, NULL) < 7) return;
  __cpuid_count(7, subleaf, r[0], r[1], r[2], r[3]);
}

/* XCR0: the register state the OS saves (bit 17/18: AMX tile config/data) */
static unsigned long long xcr0(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((unsigned long long)hi << 32) | lo;
}
#endif

int cpu_has_avx512bf16(void) {
  static int known = -1;
  if (known < 0) {
    known = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned r[4];
    cpuid7(1, r);
    known = cpu_simd() == SIMD_AVX512 && (r[0] & (1u << 5)) != 0;
#endif
  }
  return known;
}

int cpu_has_amx_bf16(void) {
  static int known = -1;
  if (known < 0) {
    known = 0;
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
    unsigned r[4];
    cpuid7(0, r);
    int amx = (r[3] & (1u << 22)) && (r[3] & (1u << 24));
    /* ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18: without this grant the first tile
     * instruction faults; kernels before 5.16 know no such request and have no AMX support */
    if (amx && cpu_simd() == SIMD_AVX512 && syscall(SYS_arch_prctl, 0x1023, 18) == 0)
      known = (xcr0() & (3ull << 17)) == (3ull << 17);
#endif
  }
  return known;
}
