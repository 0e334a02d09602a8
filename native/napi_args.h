/* Argument unpacking for the N-API kernel wrappers. Every wrapper validates what it reads and
 * throws a JavaScript TypeError naming the argument, so a wrong call never reaches C with a
 * bad pointer. Float32Array/Int32Array arguments may be null where a kernel allows it. */
#ifndef LLMTS_NAPI_ARGS_H
#define LLMTS_NAPI_ARGS_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_ARGS 24

typedef struct {
  napi_env env;
  napi_value argv[MAX_ARGS];
  size_t argc;
  int failed;
} args_t;

/* Read the call's arguments; returns 0 (and has thrown) if fewer than `want` were given. */
int args_init(args_t *a, napi_env env, napi_callback_info info, size_t want, const char *fname);
/* A Float32Array (length checked against min_len); NULL with allow_null for null/undefined. */
float *arg_f32(args_t *a, size_t i, size_t min_len, int allow_null);
int32_t *arg_i32(args_t *a, size_t i, size_t min_len);
/* An Int32Array, or NULL for null/undefined (an optional trailing argument left out). */
int32_t *arg_i32_or_null(args_t *a, size_t i, size_t min_len);
uint8_t *arg_u8(args_t *a, size_t i, size_t min_len);
double arg_f64(args_t *a, size_t i);
int64_t arg_int(args_t *a, size_t i);
int arg_bool(args_t *a, size_t i);

napi_value make_undefined(napi_env env);
napi_value make_number(napi_env env, double v);

typedef struct {
  const char *name;
  napi_callback fn;
} export_t;

#endif
