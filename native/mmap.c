/* mapFile(path) -> ArrayBuffer over the whole file, memory-mapped.
 *
 * The mapping is MAP_PRIVATE with PROT_READ | PROT_WRITE: pages are read from the file on first
 * touch (and can be dropped again by the kernel under memory pressure while unmodified), and a
 * write into the buffer (e.g. an in-place optimizer step on a loaded parameter) copies that page
 * for this process only, so the file itself is never modified. The file descriptor is closed
 * right after mapping; the mapping is removed (munmap) by the ArrayBuffer's finalizer once the
 * buffer and every view of it have been garbage collected.
 *
 * Errors (thrown as JavaScript Errors naming the path): the file cannot be opened, is a
 * directory or not a regular file, is empty (a zero-length mapping is impossible), or the
 * mapping fails. Where <sys/mman.h> is not available the export is simply absent and the
 * TypeScript side reads files instead (src/formats/file-source.ts). */
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "napi_args.h"

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define LLMTS_HAVE_MMAP 1
#endif

#ifdef LLMTS_HAVE_MMAP

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

typedef struct {
  void *addr;
  size_t len;
} mapping_t;

static void unmap_finalizer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  munmap(m->addr, m->len);
  free(m);
}

static napi_value throw_path(napi_env env, const char *path, const char *what, int err) {
  char msg[1200];
  if (err) snprintf(msg, sizeof msg, "mapFile: %s: %s (%s)", path, what, strerror(err));
  else snprintf(msg, sizeof msg, "mapFile: %s: %s", path, what);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* mapFile(path: string): ArrayBuffer */
static napi_value js_map_file(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype vt = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &vt);
  if (vt != napi_string) {
    napi_throw_type_error(env, NULL, "llmts native mapFile: argument 0 must be a file path (string)");
    return NULL;
  }
  size_t n = 0;
  napi_get_value_string_utf8(env, argv[0], NULL, 0, &n);
  char *path = (char *)malloc(n + 1);
  if (!path) {
    napi_throw_error(env, NULL, "mapFile: out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], path, n + 1, &n);
  if (strlen(path) != n) {
    free(path);
    napi_throw_type_error(env, NULL, "llmts native mapFile: the path contains a NUL character");
    return NULL;
  }

  napi_value result = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw_path(env, path, "cannot open", errno);
    free(path);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    throw_path(env, path, "cannot stat", errno);
  } else if (S_ISDIR(st.st_mode)) {
    throw_path(env, path, "is a directory, not a file", 0);
  } else if (!S_ISREG(st.st_mode)) {
    throw_path(env, path, "is not a regular file", 0);
  } else if (st.st_size == 0) {
    throw_path(env, path, "is empty (0 bytes)", 0);
  } else if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
    throw_path(env, path, "is too large to map in this process", 0);
  } else {
    size_t len = (size_t)st.st_size;
    void *addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int map_err = errno;
    if (addr == MAP_FAILED) {
      throw_path(env, path, "mmap failed", map_err);
    } else {
      mapping_t *m = (mapping_t *)malloc(sizeof *m);
      napi_status s = napi_generic_failure;
      if (m) {
        m->addr = addr;
        m->len = len;
        s = napi_create_external_arraybuffer(env, addr, len, unmap_finalizer, m, &result);
      }
      if (s != napi_ok) {
        munmap(addr, len);
        free(m);
        result = NULL;
        /* e.g. napi_no_external_buffers_allowed in runtimes with the V8 sandbox */
        bool pending = false;
        napi_is_exception_pending(env, &pending);
        if (!pending) throw_path(env, path, "cannot create an external ArrayBuffer over the mapping", 0);
      }
    }
  }
  close(fd); /* the mapping keeps the file's pages reachable without the descriptor */
  free(path);
  return result;
}

const export_t mmap_exports[] = {
    {"mapFile", js_map_file},
    {NULL, NULL},
};

#else /* no mmap: the TypeScript side falls back to reading */

const export_t mmap_exports[] = {
    {NULL, NULL},
};

#endif
