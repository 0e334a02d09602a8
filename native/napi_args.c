/* See napi_args.h. */
#include "napi_args.h"

#include <stdio.h>

static const char *current_fn = "";

static void fail(args_t *a, size_t i, const char *what) {
  if (a->failed) return;
  char msg[200];
  snprintf(msg, sizeof msg, "llmts native %s: argument %zu %s", current_fn, i, what);
  napi_throw_type_error(a->env, NULL, msg);
  a->failed = 1;
}

int args_init(args_t *a, napi_env env, napi_callback_info info, size_t want, const char *fname) {
  a->env = env;
  a->argc = MAX_ARGS;
  a->failed = 0;
  current_fn = fname;
  napi_get_cb_info(env, info, &a->argc, a->argv, NULL, NULL);
  if (a->argc < want) {
    char msg[160];
    snprintf(msg, sizeof msg, "llmts native %s: expected %zu arguments, got %zu", fname, want, a->argc);
    napi_throw_type_error(env, NULL, msg);
    a->failed = 1;
    return 0;
  }
  return 1;
}

static void *typed(args_t *a, size_t i, napi_typedarray_type want, size_t min_len, int allow_null) {
  if (a->failed) return NULL;
  napi_valuetype vt;
  napi_typeof(a->env, a->argv[i], &vt);
  if (vt == napi_null || vt == napi_undefined) {
    if (!allow_null) fail(a, i, "must not be null");
    return NULL;
  }
  bool is_typed = false;
  napi_is_typedarray(a->env, a->argv[i], &is_typed);
  if (!is_typed) {
    fail(a, i, "must be a typed array");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value buffer;
  size_t offset;
  napi_get_typedarray_info(a->env, a->argv[i], &type, &length, &data, &buffer, &offset);
  if (type != want) {
    fail(a, i, want == napi_float32_array ? "must be a Float32Array" : want == napi_uint8_array ? "must be a Uint8Array" : "must be an Int32Array");
    return NULL;
  }
  if (length < min_len) {
    fail(a, i, "is shorter than the kernel needs");
    return NULL;
  }
  return data;
}

float *arg_f32(args_t *a, size_t i, size_t min_len, int allow_null) {
  return (float *)typed(a, i, napi_float32_array, min_len, allow_null);
}

int32_t *arg_i32(args_t *a, size_t i, size_t min_len) {
  return (int32_t *)typed(a, i, napi_int32_array, min_len, 0);
}

int32_t *arg_i32_or_null(args_t *a, size_t i, size_t min_len) {
  return (int32_t *)typed(a, i, napi_int32_array, min_len, 1);
}

uint8_t *arg_u8(args_t *a, size_t i, size_t min_len) {
  return (uint8_t *)typed(a, i, napi_uint8_array, min_len, 0);
}

double arg_f64(args_t *a, size_t i) {
  double v = 0;
  if (a->failed) return 0;
  if (napi_get_value_double(a->env, a->argv[i], &v) != napi_ok) fail(a, i, "must be a number");
  return v;
}

int64_t arg_int(args_t *a, size_t i) {
  int64_t v = 0;
  if (a->failed) return 0;
  if (napi_get_value_int64(a->env, a->argv[i], &v) != napi_ok) fail(a, i, "must be an integer");
  return v;
}

int arg_bool(args_t *a, size_t i) {
  bool v = false;
  if (a->failed) return 0;
  if (napi_get_value_bool(a->env, a->argv[i], &v) != napi_ok) fail(a, i, "must be a boolean");
  return v ? 1 : 0;
}

napi_value make_undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value make_number(napi_env env, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  return n;
}
