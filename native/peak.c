/* fmaPeak(ms) -> GFLOP/s of independent fused multiply-adds on every pool thread: the
 * machine's measured arithmetic ceiling, which bench/gemm reports GEMM speed against. */
#include <time.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_sec(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS 12
#define ROUNDS 4096

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float burn_avx512(long rounds) {
  __m512 acc[CHAINS];
  __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-6f);
  for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
  for (long n = 0; n < rounds; n++)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float burn_avx2(long rounds) {
  __m256 acc[CHAINS];
  __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-6f);
  for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
  for (long n = 0; n < rounds; n++)
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  __m256 s = acc[0];
  for (int i = 1; i < CHAINS; i++) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}
#endif

static int lanes(void) {
  simd_level l = cpu_simd();
  return l == SIMD_AVX512 ? 16 : l == SIMD_AVX2 ? 8 : 4;
}

static float burn(long rounds) {
#if defined(__x86_64__)
  if (cpu_simd() == SIMD_AVX512) return burn_avx512(rounds);
  if (cpu_simd() == SIMD_AVX2) return burn_avx2(rounds);
#endif
  typedef float v4f __attribute__((vector_size(16)));
  v4f acc[CHAINS], x = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, y = {1e-6f, 1e-6f, 1e-6f, 1e-6f};
  for (int i = 0; i < CHAINS; i++) acc[i] = (v4f){(float)i, (float)i, (float)i, (float)i};
  for (long n = 0; n < rounds; n++)
    for (int i = 0; i < CHAINS; i++) acc[i] = acc[i] * x + y;
  return acc[0][0] + acc[CHAINS - 1][1];
}

typedef struct {
  double seconds;
  volatile float sink[256];
  long rounds[256];
} peak_ctx;

static void peak_task(void *vctx, int task, int thread) {
  peak_ctx *c = (peak_ctx *)vctx;
  double end = now_sec() + c->seconds;
  long done = 0;
  float s = 0;
  while (now_sec() < end) {
    s += burn(ROUNDS);
    done += ROUNDS;
  }
  c->sink[task & 255] = s;
  c->rounds[task & 255] = done;
}

static napi_value js_fma_peak(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 1, "fmaPeak")) return NULL;
  double ms = arg_f64(&a, 0);
  if (a.failed) return NULL;
  static peak_ctx c;
  c.seconds = ms / 1000.0;
  int threads = pool_size();
  double t0 = now_sec();
  pool_run(peak_task, &c, threads);
  double dt = now_sec() - t0;
  double flops = 0;
  for (int t = 0; t < threads && t < 256; t++) flops += (double)c.rounds[t] * CHAINS * lanes() * 2.0;
  return make_number(env, flops / dt / 1e9);
}

const export_t peak_exports[] = {{"fmaPeak", js_fma_peak}, {NULL, NULL}};
