/* copyRows: strided block copy or accumulate (splitting/joining the last dimension). */
#include <string.h>

#include "napi_args.h"

/* copyRows(src, srcOffset, srcStride, dst, dstOffset, dstStride, rows, width, accumulate) */
static napi_value js_copyRows(napi_env env, napi_callback_info info) {
  args_t a;
  if (!args_init(&a, env, info, 9, "copyRows")) return NULL;
  int64_t so = arg_int(&a, 1), ss = arg_int(&a, 2), doff = arg_int(&a, 4), ds = arg_int(&a, 5);
  int64_t rows = arg_int(&a, 6), width = arg_int(&a, 7);
  int acc = arg_bool(&a, 8);
  if (a.failed) return NULL;
  if (so < 0 || ss < 0 || doff < 0 || ds < 0 || rows < 0 || width < 0) {
    napi_throw_range_error(env, NULL, "llmts native copyRows: negative offset, stride or size");
    return NULL;
  }
  size_t need_src = rows > 0 && width > 0 ? (size_t)(so + (rows - 1) * ss + width) : 0;
  size_t need_dst = rows > 0 && width > 0 ? (size_t)(doff + (rows - 1) * ds + width) : 0;
  const float *src = arg_f32(&a, 0, need_src, 0);
  float *dst = arg_f32(&a, 3, need_dst, 0);
  if (a.failed) return NULL;
  for (int64_t r = 0; r < rows; r++) {
    const float *s = src + so + r * ss;
    float *d = dst + doff + r * ds;
    if (acc)
      for (int64_t j = 0; j < width; j++) d[j] += s[j];
    else
      memcpy(d, s, (size_t)width * sizeof(float));
  }
  return make_undefined(env);
}

const export_t copy_exports[] = {{"copyRows", js_copyRows}, {NULL, NULL}};
