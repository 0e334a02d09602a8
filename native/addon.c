/* llmts_native: the N-API addon. Starts the thread pool and registers every kernel family's
 * exports (each kernel file lists its own in an export_t table). */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include <node_api.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"
#include "napi_args.h"
#include "threadpool.h"

extern const export_t gemm_exports[];
extern const export_t elementwise_exports[];
extern const export_t activation_exports[];
extern const export_t norm_exports[];
extern const export_t softmax_exports[];
extern const export_t attention_exports[];
extern const export_t rope_exports[];
extern const export_t embedding_exports[];
extern const export_t cross_entropy_exports[];
extern const export_t adamw_exports[];
extern const export_t peak_exports[];
extern const export_t copy_exports[];
extern const export_t attention_cached_exports[];
extern const export_t quant_matmul_exports[];
extern const export_t sampling_exports[];
extern const export_t mmap_exports[];
extern const export_t decode_exports[];
extern const export_t quant_matmul_t_exports[];
extern const export_t bf16_exports[];
extern const export_t gemm_bf16_exports[];

static const export_t *const all_exports[] = {
    gemm_exports,    elementwise_exports, activation_exports, norm_exports,          softmax_exports,
    attention_exports, rope_exports,      embedding_exports,  cross_entropy_exports, adamw_exports, peak_exports, copy_exports,
    attention_cached_exports, quant_matmul_exports, sampling_exports, mmap_exports, decode_exports,
    quant_matmul_t_exports,
    bf16_exports, gemm_bf16_exports,
};

/* CPUs a cgroup v2 quota allows ("max" or absent: no limit, 0), rounded up: a container given
 * 2 CPUs of a 64-core host should not start 64 threads that take turns on them */
static int cgroup_cpus(void) {
#if defined(__linux__)
  FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
  if (!f) return 0;
  char quota[32] = {0};
  long period = 0;
  int got = fscanf(f, "%31s %ld", quota, &period);
  fclose(f);
  if (got != 2 || period <= 0 || strcmp(quota, "max") == 0) return 0;
  long q = atol(quota);
  return q > 0 ? (int)((q + period - 1) / period) : 0;
#else
  return 0;
#endif
}

/* LLMTS_THREADS, else the CPUs this process may run on (its affinity mask, so `taskset -c 0`
 * means one thread), capped by a cgroup CPU quota */
static int thread_count(void) {
  const char *env = getenv("LLMTS_THREADS");
  if (env && atoi(env) > 0) return atoi(env);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
#endif
  int quota = cgroup_cpus();
  if (quota > 0 && quota < n) n = quota;
  return n > 0 ? (int)n : 1;
}

/* info() -> { simd: 'avx512' | 'avx2' | 'portable', threads: n } */
static napi_value js_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, simd, threads;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, cpu_simd_name(cpu_simd()), NAPI_AUTO_LENGTH, &simd);
  napi_create_int32(env, pool_size(), &threads);
  napi_set_named_property(env, obj, "simd", simd);
  napi_set_named_property(env, obj, "threads", threads);
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  pool_init(thread_count());
  cpu_simd();
  napi_value fn;
  napi_create_function(env, "info", NAPI_AUTO_LENGTH, js_info, NULL, &fn);
  napi_set_named_property(env, exports, "info", fn);
  for (size_t t = 0; t < sizeof all_exports / sizeof all_exports[0]; t++) {
    for (const export_t *e = all_exports[t]; e->name; e++) {
      napi_create_function(env, e->name, NAPI_AUTO_LENGTH, e->fn, NULL, &fn);
      napi_set_named_property(env, exports, e->name, fn);
    }
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
