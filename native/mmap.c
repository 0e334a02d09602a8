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
 * directory or not a regular file, is empty (a zero-length mapping is impossible), the mapping
 * fails, or the fault guard cannot be set up (see below). Where <sys/mman.h> is not available
 * the exports are simply absent and the TypeScript side reads files instead
 * (src/formats/file-source.ts).
 *
 * Fault guard (issue 14): a page of the mapping that is touched after the file shrank below it
 * (truncated, or rewritten in place by a tool that truncates first) cannot be read, and the
 * kernel answers the access with SIGBUS, which would kill the process without a word, from JS
 * code, a kernel of the thread pool or decode.c alike. So every mapping is registered in a
 * fixed table of [start, end) ranges, and a SIGBUS handler (installed with the first mapping)
 * that finds the faulting address in one of them maps anonymous zero pages over the rest of
 * that mapping, from the faulting page to its end, marks the mapping faulted, and returns: the
 * access is retried and reads zeros. The TypeScript side asks mapFaults() at safe points (after
 * loading, after each prefill / decoded token, after each training step) and throws a one-line
 * error naming the file. Zeroing to the end (not just the faulting page) is right because a
 * truncation removes every page past the new end from the mapping (even copy-on-write copies),
 * and it keeps the mapping at two VMAs however many pages are touched afterwards (a page at a
 * time would split it into one VMA per page and hit vm.max_map_count). A SIGBUS outside our
 * ranges (or one we cannot repair) goes to the handler that was there before, or, where that
 * was the default, ends the process with SIGBUS exactly as before.
 *
 * mapFaults(): number        live mappings that have faulted (one cheap call, the per-token check)
 * mapFaults(buffer): number  1 if the mapping under this ArrayBuffer (from mapFile) faulted, else 0
 * mapFaultPaths(): string[]  paths of the live mappings that faulted */
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>

#include "napi_args.h"

#if defined(__unix__) || defined(__APPLE__)
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#define LLMTS_HAVE_MMAP 1
#endif

#ifdef LLMTS_HAVE_MMAP

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

#ifndef MAP_ANONYMOUS
#define MAP_ANONYMOUS MAP_ANON
#endif

/* ---- fault guard --------------------------------------------------------------------------
 * The table is written only under guard_lock (mapFile and finalizers, on JS threads) and read
 * lock-free by the signal handler, which touches nothing but these atomics and static data.
 * A slot is claimed by setting start, then end; it is released by clearing end, then start, so
 * the handler never sees a range that is wider than a live mapping. */
#define GUARD_SLOTS 1024

typedef struct {
  _Atomic uintptr_t start; /* 0: free */
  _Atomic uintptr_t end;   /* one past the last byte of the mapping's last page; 0 while (un)filling */
  atomic_int faulted;      /* set by the handler once it zero-filled part of this mapping */
  char *path;              /* for the error message; guard_lock only */
} guard_slot_t;

static guard_slot_t guard_slots[GUARD_SLOTS];
static atomic_int guard_used;     /* slots [0, guard_used) may be in use: the handler's scan bound */
static atomic_int guard_faulted;  /* live mappings with faulted set: what mapFaults() returns */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int guard_installed;
static uintptr_t guard_page;
static struct sigaction guard_previous; /* SIGBUS disposition before ours, for other faults */
static struct sigaction guard_default;  /* SIG_DFL, prepared outside the handler */

/* Map fresh zero pages over [addr, addr + len). mmap is not on POSIX's list of
 * async-signal-safe functions, but it is a plain system call that takes no user-space lock;
 * on Linux we make the system call ourselves so no libc wrapper (or sanitizer interceptor)
 * stands in between. MAP_FIXED replaces the unreadable file pages atomically. */
static int zero_fill(uintptr_t addr, size_t len) {
#if defined(__linux__) && defined(SYS_mmap) && (defined(__x86_64__) || defined(__aarch64__))
  long r = syscall(SYS_mmap, addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0L);
  return r == (long)addr ? 0 : -1;
#else
  void *r = mmap((void *)addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  return r == (void *)addr ? 0 : -1;
#endif
}

/* Not ours: behave as if we had never installed a handler. */
static void guard_chain(int sig, siginfo_t *si, void *uctx) {
  const struct sigaction *p = &guard_previous;
  if (p->sa_flags & SA_SIGINFO) {
    if (p->sa_sigaction) {
      p->sa_sigaction(sig, si, uctx);
      return;
    }
  } else if (p->sa_handler == SIG_IGN) {
    if (si->si_code <= 0) return; /* sent with kill(): ignored, as before */
    /* a real fault cannot be ignored: the kernel would have killed the process */
  } else if (p->sa_handler != SIG_DFL) {
    p->sa_handler(sig);
    return;
  }
  /* the default action: restore it; a fault then recurs when the instruction is retried and
   * ends the process with SIGBUS (and its core dump), a kill() is sent again */
  sigaction(SIGBUS, &guard_default, NULL);
  if (si->si_code <= 0) raise(SIGBUS); /* blocked until this handler returns */
}

static void guard_handler(int sig, siginfo_t *si, void *uctx) {
  int saved_errno = errno;
  int kernel_fault = si->si_code > 0;
#ifdef BUS_MCEERR_AR
  if (si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO) kernel_fault = 0; /* memory hardware error */
#endif
  if (kernel_fault) {
    uintptr_t a = (uintptr_t)si->si_addr;
    int n = atomic_load_explicit(&guard_used, memory_order_acquire);
    for (int i = 0; i < n; i++) {
      guard_slot_t *g = &guard_slots[i];
      uintptr_t start = atomic_load_explicit(&g->start, memory_order_acquire);
      if (start == 0 || a < start) continue;
      uintptr_t end = atomic_load_explicit(&g->end, memory_order_acquire);
      if (a >= end) continue;
      uintptr_t page = a & ~(guard_page - 1);
      if (zero_fill(page, end - page) != 0) break; /* cannot repair: let it end as before */
      int expected = 0;
      if (atomic_compare_exchange_strong(&g->faulted, &expected, 1)) atomic_fetch_add(&guard_faulted, 1);
      errno = saved_errno;
      return;
    }
  }
  guard_chain(sig, si, uctx);
  errno = saved_errno;
}

/* With guard_lock held: install the handler once. 0 or an errno value. */
static int guard_install(void) {
  if (guard_installed) return 0;
  long ps = sysconf(_SC_PAGESIZE);
  guard_page = ps > 0 ? (uintptr_t)ps : 4096;
  memset(&guard_default, 0, sizeof guard_default);
  guard_default.sa_handler = SIG_DFL;
  sigemptyset(&guard_default.sa_mask);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = guard_handler;
  /* SA_ONSTACK: run on the thread's alternate stack when it has one */
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &guard_previous) != 0) return errno;
  guard_installed = 1;
  return 0;
}

/* Register [addr, addr + len) under path; returns the slot, or -1 (table full: errno ENFILE). */
static int guard_register(void *addr, size_t len, const char *path, int *err) {
  pthread_mutex_lock(&guard_lock);
  int slot = -1;
  *err = guard_install();
  if (*err == 0) {
    for (int i = 0; i < GUARD_SLOTS; i++) {
      if (atomic_load_explicit(&guard_slots[i].start, memory_order_relaxed) == 0) {
        slot = i;
        break;
      }
    }
    if (slot < 0) *err = ENFILE;
  }
  if (slot >= 0) {
    guard_slot_t *g = &guard_slots[slot];
    g->path = strdup(path); /* NULL on out of memory: the message then names no file */
    atomic_store(&g->faulted, 0);
    uintptr_t start = (uintptr_t)addr;
    uintptr_t end = (start + len + guard_page - 1) & ~(guard_page - 1);
    atomic_store_explicit(&g->start, start, memory_order_release);
    atomic_store_explicit(&g->end, end, memory_order_release);
    if (slot + 1 > atomic_load(&guard_used)) atomic_store_explicit(&guard_used, slot + 1, memory_order_release);
  }
  pthread_mutex_unlock(&guard_lock);
  return slot;
}

static void guard_release(int slot) {
  pthread_mutex_lock(&guard_lock);
  guard_slot_t *g = &guard_slots[slot];
  atomic_store_explicit(&g->end, 0, memory_order_release);
  atomic_store_explicit(&g->start, 0, memory_order_release);
  if (atomic_exchange(&g->faulted, 0)) atomic_fetch_sub(&guard_faulted, 1);
  free(g->path);
  g->path = NULL;
  pthread_mutex_unlock(&guard_lock);
}

typedef struct {
  void *addr;
  size_t len;
  int slot;
} mapping_t;

static void unmap_finalizer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  mapping_t *m = (mapping_t *)hint;
  guard_release(m->slot); /* no view is left, so nothing can fault in it any more */
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
      int guard_err = 0;
      int slot = guard_register(addr, len, path, &guard_err);
      mapping_t *m = slot >= 0 ? (mapping_t *)malloc(sizeof *m) : NULL;
      napi_status s = napi_generic_failure;
      if (slot < 0) {
        /* never hand out a mapping that a truncation could turn into a fatal signal */
        throw_path(env, path, guard_err == ENFILE ? "too many mapped files to guard" : "cannot install the SIGBUS guard", guard_err == ENFILE ? 0 : guard_err);
      } else if (m) {
        m->addr = addr;
        m->len = len;
        m->slot = slot;
        s = napi_create_external_arraybuffer(env, addr, len, unmap_finalizer, m, &result);
      }
      if (s != napi_ok) {
        if (slot >= 0) guard_release(slot);
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

/* mapFaults(): live mappings that faulted; mapFaults(buffer): 1 if that buffer's mapping did */
static napi_value js_map_faults(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int n = atomic_load_explicit(&guard_faulted, memory_order_acquire);
  if (argc >= 1 && n > 0) {
    bool is_ab = false;
    napi_is_arraybuffer(env, argv[0], &is_ab);
    void *data = NULL;
    size_t len = 0;
    if (is_ab && napi_get_arraybuffer_info(env, argv[0], &data, &len) == napi_ok && data) {
      uintptr_t a = (uintptr_t)data;
      int found = 0;
      pthread_mutex_lock(&guard_lock);
      for (int i = 0; i < GUARD_SLOTS; i++) {
        if (atomic_load(&guard_slots[i].start) == a) {
          found = atomic_load(&guard_slots[i].faulted) != 0;
          break;
        }
      }
      pthread_mutex_unlock(&guard_lock);
      n = found;
    } else {
      n = 0;
    }
  }
  napi_value out;
  napi_create_int32(env, n, &out);
  return out;
}

/* mapFaultPaths(): string[] */
static napi_value js_map_fault_paths(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  pthread_mutex_lock(&guard_lock);
  for (int i = 0; i < GUARD_SLOTS; i++) {
    guard_slot_t *g = &guard_slots[i];
    if (atomic_load(&g->start) == 0 || !atomic_load(&g->faulted) || !g->path) continue;
    napi_value str;
    if (napi_create_string_utf8(env, g->path, NAPI_AUTO_LENGTH, &str) == napi_ok) napi_set_element(env, arr, k++, str);
  }
  pthread_mutex_unlock(&guard_lock);
  return arr;
}

const export_t mmap_exports[] = {
    {"mapFile", js_map_file},
    {"mapFaults", js_map_faults},
    {"mapFaultPaths", js_map_fault_paths},
    {NULL, NULL},
};

#else /* no mmap: the TypeScript side falls back to reading */

const export_t mmap_exports[] = {
    {NULL, NULL},
};

#endif
