/*
 * multiprocessing-ts native addon: POSIX shared memory, process-shared futex wait/wake with its own
 * waiter threads, and socketpair. Node-API only (NAPI_VERSION 8), so one binary serves every Node.js
 * version from 20 on.
 *
 * Module state lives in C only (no JS values are kept across environments), so the addon can be
 * loaded by the main thread and by any number of worker threads.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <node_api.h>
#include <uv.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SPIN_ITERATIONS 300
/* How long readSocket retries before it sleeps in poll() unless told otherwise (see there). */
#define READ_SPIN_NS 50000
/* Without futex_waitv (Linux < 5.16), a waiter thread re-checks its cancel flag at least this often
 * (closes the check-then-sleep race); with it, a waiting thread sleeps until woken or cancelled. */
#define WAIT_SLICE_NS 250000000LL
/* An idle waiter thread exits after this long without work. */
#define IDLE_THREAD_NS 5000000000LL
#define WAITER_STACK_SIZE (256 * 1024)

#define CHECK(call)                                                                  \
  do {                                                                               \
    napi_status status_ = (call);                                                    \
    if (status_ != napi_ok) {                                                        \
      const napi_extended_error_info* info_ = NULL;                                  \
      napi_get_last_error_info(env, &info_);                                         \
      bool pending_ = false;                                                         \
      napi_is_exception_pending(env, &pending_);                                     \
      if (!pending_)                                                                 \
        napi_throw_error(env, NULL,                                                  \
                         info_ && info_->error_message ? info_->error_message        \
                                                       : "Node-API call failed");    \
      return NULL;                                                                   \
    }                                                                                \
  } while (0)

/* ------------------------------------------------------------------------------------------------
 * Errors
 * --------------------------------------------------------------------------------------------- */

static const char* errno_code(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EFAULT: return "EFAULT";
    case EAGAIN: return "EAGAIN";
    case EFBIG: return "EFBIG";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    default: return "EUNKNOWN";
  }
}

static const char* errno_class(int err) {
  switch (err) {
    case ENOENT: return "FileNotFoundError";
    case EEXIST: return "FileExistsError";
    case EACCES:
    case EPERM: return "PermissionError";
    default: return "OSError";
  }
}

/* Throws an Error shaped like Python's OSError subclasses: name, code, errno, syscall, filename. */
static void throw_errno(napi_env env, int err, const char* syscall_name, const char* filename) {
  char msg[1024];
  if (filename)
    snprintf(msg, sizeof msg, "[Errno %d] %s: '%s'", err, strerror(err), filename);
  else
    snprintf(msg, sizeof msg, "[Errno %d] %s", err, strerror(err));
  napi_value js_msg, js_code, error, v;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg) != napi_ok) return;
  if (napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &js_code) != napi_ok) return;
  if (napi_create_error(env, js_code, js_msg, &error) != napi_ok) return;
  napi_create_string_utf8(env, errno_class(err), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "name", v);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "syscall", v);
  if (filename) {
    napi_create_string_utf8(env, filename, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, error, "filename", v);
  }
  napi_throw(env, error);
}

/* ------------------------------------------------------------------------------------------------
 * Argument helpers
 * --------------------------------------------------------------------------------------------- */

static bool get_string(napi_env env, napi_value v, char* buf, size_t cap, const char* what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return false;
  }
  if (len + 1 > cap) {
    throw_errno(env, ENAMETOOLONG, "shm_open", NULL);
    return false;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  if (strlen(buf) != len) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "embedded null character in name");
    return false;
  }
  return true;
}

static bool get_bool(napi_env env, napi_value v) {
  bool b = false;
  napi_get_value_bool(env, v, &b);
  return b;
}

/* Resolves (int32array, index) to the address of that element. */
static int32_t* get_word(napi_env env, napi_value arr, napi_value index) {
  bool is_ta = false;
  napi_is_typedarray(env, arr, &is_ta);
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = NULL;
  napi_value ab;
  if (!is_ta || napi_get_typedarray_info(env, arr, &type, &length, &data, &ab, &offset) != napi_ok ||
      type != napi_int32_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected an Int32Array");
    return NULL;
  }
  double idx = -1;
  if (napi_get_value_double(env, index, &idx) != napi_ok || idx < 0 || idx >= (double)length ||
      idx != (double)(size_t)idx) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "index out of range");
    return NULL;
  }
  return (int32_t*)data + (size_t)idx;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns) {
  struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
  return ts;
}

/* Absolute CLOCK_MONOTONIC deadline in ns, or -1 for no deadline (negative/infinite/NaN timeout). */
static int64_t deadline_from_ms(double ms) {
  if (!(ms >= 0) || ms > 1e15) return -1;
  return now_ns() + (int64_t)(ms * 1e6);
}

/* Non-private FUTEX_WAIT_BITSET (absolute CLOCK_MONOTONIC timeout): works across processes. */
static long futex_wait_abs(int32_t* addr, int32_t expected, int64_t deadline, uint32_t bitset) {
  struct timespec ts;
  struct timespec* tsp = NULL;
  if (deadline >= 0) {
    ts = ns_to_ts(deadline);
    tsp = &ts;
  }
  return syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, expected, tsp, NULL, bitset);
}

static long futex_wake_bits(int32_t* addr, int count, uint32_t bitset) {
  return syscall(SYS_futex, addr, FUTEX_WAKE_BITSET, count, NULL, NULL, bitset);
}

/* futex_waitv(2) (Linux 5.16): one sleep on several words, woken by a change of any. Declared here
 * so that the addon builds against older headers too. */
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct mp_futex_waitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t reserved;
};
#define MP_FUTEX_32 2u
#define MP_FUTEX_PRIVATE 128u

/* 1 while futex_waitv may work, 0 once the kernel said ENOSYS. */
static atomic_int waitv_available = 1;

/* Sleeps until *addr != expected or *cancel_word != 0 (woken through either), or until the
 * absolute CLOCK_MONOTONIC deadline (-1: none). Returns the index woken (0: addr, 1: cancel_word)
 * or -1 with errno (EAGAIN: one of the words had already changed; ETIMEDOUT; EINTR; ENOSYS). */
static long futex_wait_or_cancel(int32_t* addr, int32_t expected, _Atomic int32_t* cancel_word, int64_t deadline) {
  struct mp_futex_waitv w[2] = {
      {.val = (uint32_t)expected, .uaddr = (uintptr_t)addr, .flags = MP_FUTEX_32, .reserved = 0},
      {.val = 0, .uaddr = (uintptr_t)cancel_word, .flags = MP_FUTEX_32 | MP_FUTEX_PRIVATE, .reserved = 0},
  };
  struct timespec ts;
  struct timespec* tsp = NULL;
  if (deadline >= 0) {
    ts = ns_to_ts(deadline);
    tsp = &ts;
  }
  return syscall(SYS_futex_waitv, w, 2, 0, tsp, CLOCK_MONOTONIC);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ------------------------------------------------------------------------------------------------
 * Shared memory
 * --------------------------------------------------------------------------------------------- */

/* One mapping handed to JS as an external ArrayBuffer. Freed by the ArrayBuffer's finalizer;
 * `unmapped` is set when shmClose() detached the buffer and unmapped it early. Both run on the
 * thread of the environment that owns the buffer. */
typedef struct mapping {
  void* addr;
  size_t len;
  int unmapped;
  struct mapping* next;
} mapping;

static pthread_mutex_t mappings_mu = PTHREAD_MUTEX_INITIALIZER;
static mapping* mappings = NULL; /* external-ArrayBuffer mappings still mapped */

static void mappings_remove_locked(mapping* m) {
  for (mapping** p = &mappings; *p; p = &(*p)->next) {
    if (*p == m) {
      *p = m->next;
      return;
    }
  }
}

static void finalize_external_ab(napi_env env, void* data, void* hint) {
  (void)env;
  (void)data;
  mapping* m = hint;
  pthread_mutex_lock(&mappings_mu);
  if (!m->unmapped) {
    mappings_remove_locked(m);
    munmap(m->addr, m->len);
  }
  pthread_mutex_unlock(&mappings_mu);
  free(m);
}

/* SharedArrayBuffer deleter: may run on any thread, once no isolate references the memory. */
static void finalize_sab(void* data, void* hint) {
  munmap(data, (size_t)(uintptr_t)hint);
}

typedef napi_status (*create_external_sab_fn)(napi_env env, void* data, size_t len,
                                              void (*finalize)(void* data, void* hint), void* hint,
                                              napi_value* result);
static create_external_sab_fn create_external_sab = NULL;
static pthread_once_t sab_once = PTHREAD_ONCE_INIT;
static int force_arraybuffer = 0;

static void find_external_sab(void) {
  const char* force = getenv("MP_NATIVE_FORCE_ARRAYBUFFER");
  force_arraybuffer = force && *force && strcmp(force, "0") != 0;
  create_external_sab =
      (create_external_sab_fn)dlsym(RTLD_DEFAULT, "node_api_create_external_sharedarraybuffer");
}

/* shmOpen(name, create, exclusive, size) -> { buffer, size, shared } */
static napi_value shm_open_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "shmOpen(name, create, exclusive, size)");
    return NULL;
  }
  char name[512];
  if (!get_string(env, argv[0], name, sizeof name, "name must be a string")) return NULL;
  bool create = get_bool(env, argv[1]);
  bool exclusive = get_bool(env, argv[2]);
  double dsize = 0;
  CHECK(napi_get_value_double(env, argv[3], &dsize));
  if (create && !(dsize > 0 && dsize <= (double)SSIZE_MAX)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "size must be a positive integer");
    return NULL;
  }

  int flags = O_RDWR | (create ? O_CREAT : 0) | (create && exclusive ? O_EXCL : 0);
  int fd;
  do fd = shm_open(name, flags, 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "shm_open", name);
    return NULL;
  }
  struct stat st;
  if (create) {
    /* Grow only: a non-exclusive open of an existing, larger segment keeps its size (as Python's
     * attach ignores the size argument). */
    if (fstat(fd, &st) == 0 && (double)st.st_size < dsize && ftruncate(fd, (off_t)dsize) != 0) {
      int err = errno;
      close(fd);
      if (exclusive) shm_unlink(name);
      throw_errno(env, err, "ftruncate", name);
      return NULL;
    }
  }
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "fstat", name);
    return NULL;
  }
  size_t len = (size_t)st.st_size;
  if (len == 0) {
    close(fd);
    napi_throw_error(env, "EINVAL", "cannot mmap an empty file");
    return NULL;
  }
  void* addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int err = errno;
  close(fd);
  if (addr == MAP_FAILED) {
    throw_errno(env, err, "mmap", name);
    return NULL;
  }

  pthread_once(&sab_once, find_external_sab);
  napi_value buffer;
  bool shared = false;
  if (create_external_sab && !force_arraybuffer &&
      create_external_sab(env, addr, len, finalize_sab, (void*)(uintptr_t)len, &buffer) == napi_ok) {
    shared = true;
  } else {
    mapping* m = calloc(1, sizeof *m);
    if (!m) {
      munmap(addr, len);
      throw_errno(env, ENOMEM, "calloc", NULL);
      return NULL;
    }
    m->addr = addr;
    m->len = len;
    napi_status s = napi_create_external_arraybuffer(env, addr, len, finalize_external_ab, m, &buffer);
    if (s != napi_ok) {
      munmap(addr, len);
      free(m);
      CHECK(s);
    }
    pthread_mutex_lock(&mappings_mu);
    m->next = mappings;
    mappings = m;
    pthread_mutex_unlock(&mappings_mu);
  }
  napi_value result, v;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "buffer", buffer));
  CHECK(napi_create_double(env, (double)len, &v));
  CHECK(napi_set_named_property(env, result, "size", v));
  CHECK(napi_get_boolean(env, shared, &v));
  CHECK(napi_set_named_property(env, result, "shared", v));
  return result;
}

/* shmUnlink(name) */
static napi_value shm_unlink_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[512];
  if (argc < 1 || !get_string(env, argv[0], name, sizeof name, "name must be a string")) return NULL;
  if (shm_unlink(name) != 0) {
    throw_errno(env, errno, "shm_unlink", name);
    return NULL;
  }
  return NULL;
}

/* shmClose(buffer) -> boolean: detaches an external ArrayBuffer made by shmOpen and unmaps it now.
 * Returns false for anything else (a SharedArrayBuffer cannot be detached; it is unmapped when the
 * last reference to it, in every thread, is collected). */
static napi_value shm_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_ab = false;
  if (argc >= 1) napi_is_arraybuffer(env, argv[0], &is_ab);
  void* data = NULL;
  size_t len = 0;
  mapping* m = NULL;
  if (is_ab && napi_get_arraybuffer_info(env, argv[0], &data, &len) == napi_ok && data) {
    pthread_mutex_lock(&mappings_mu);
    for (m = mappings; m; m = m->next)
      if (m->addr == data && m->len == len) break;
    pthread_mutex_unlock(&mappings_mu);
  }
  if (!m || napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    CHECK(napi_get_boolean(env, false, &result));
    return result;
  }
  pthread_mutex_lock(&mappings_mu);
  mappings_remove_locked(m);
  m->unmapped = 1;
  munmap(m->addr, m->len);
  pthread_mutex_unlock(&mappings_mu);
  CHECK(napi_get_boolean(env, true, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * Blocking futex
 * --------------------------------------------------------------------------------------------- */

static napi_value str(napi_env env, const char* s) {
  napi_value v = NULL;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  return v;
}

/* argv[i] as a number, or `fallback` when it is missing or not a number (optional arguments). */
static double optional_number(napi_env env, size_t argc, napi_value* argv, size_t i, double fallback) {
  if (argc <= i) return fallback;
  napi_valuetype t;
  double v = fallback;
  if (napi_typeof(env, argv[i], &t) == napi_ok && t == napi_number) napi_get_value_double(env, argv[i], &v);
  return v;
}

typedef struct {
  napi_value argv[5];
  size_t argc;
  int32_t* addr;
  int32_t expected;
  double ms;
} wait_args;

/* The (int32array, index, expected, timeoutMs?, ...) of futexWait and futexWaitAsync (all the
 * arguments stay in out->argv); false after throwing. */
static bool get_wait_args(napi_env env, napi_callback_info info, const char* usage, wait_args* out) {
  out->argc = 5;
  if (napi_get_cb_info(env, info, &out->argc, out->argv, NULL, NULL) != napi_ok) return false;
  size_t argc = out->argc;
  napi_value* argv = out->argv;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  out->addr = get_word(env, argv[0], argv[1]);
  if (!out->addr) return false;
  if (napi_get_value_int32(env, argv[2], &out->expected) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  out->ms = optional_number(env, argc, argv, 3, -1);
  return true;
}

/* futexWait(int32array, index, expected, timeoutMs) -> 'ok' | 'not-equal' | 'timed-out' */
static napi_value futex_wait_js(napi_env env, napi_callback_info info) {
  wait_args a;
  if (!get_wait_args(env, info, "futexWait(int32array, index, expected, timeoutMs)", &a)) return NULL;
  int32_t* addr = a.addr;
  int32_t expected = a.expected;
  double ms = a.ms;
  _Atomic int32_t* word = (_Atomic int32_t*)addr;
  if (atomic_load(word) != expected) return str(env, "not-equal");
  int64_t deadline = deadline_from_ms(ms);
  for (int i = 0; i < SPIN_ITERATIONS; i++) {
    if (atomic_load_explicit(word, memory_order_acquire) != expected) return str(env, "ok");
    cpu_relax();
  }
  for (;;) {
    if (deadline >= 0 && now_ns() >= deadline) return str(env, "timed-out");
    long r = futex_wait_abs(addr, expected, deadline, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return str(env, "ok");
    int err = errno;
    if (err == EAGAIN) return str(env, "not-equal");
    if (err == ETIMEDOUT) return str(env, "timed-out");
    if (err == EINTR) continue;
    throw_errno(env, err, "futex", NULL);
    return NULL;
  }
}

/* futexWake(int32array, index, count) -> number of waiters woken */
static napi_value futex_wake_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "futexWake(int32array, index, count)");
    return NULL;
  }
  int32_t* addr = get_word(env, argv[0], argv[1]);
  if (!addr) return NULL;
  double dcount = optional_number(env, argc, argv, 2, INT_MAX);
  int count = dcount >= INT_MAX || dcount != dcount ? INT_MAX : dcount < 0 ? 0 : (int)dcount;
  long r = futex_wake_bits(addr, count, FUTEX_BITSET_MATCH_ANY);
  if (r < 0) {
    throw_errno(env, errno, "futex", NULL);
    return NULL;
  }
  napi_value v;
  CHECK(napi_create_int32(env, (int32_t)r, &v));
  return v;
}

/* ------------------------------------------------------------------------------------------------
 * Asynchronous futex wait on the addon's own threads
 *
 * Each pending wait is one job, run by one waiter thread (never libuv's pool). Threads are pooled:
 * a thread that finishes a job waits up to IDLE_THREAD_NS for the next one, then exits, so the
 * number of threads is at most the peak number of pending waits.
 *
 * A job sleeps with futex_waitv on two words: the caller's and its own cancel word, which cancel()
 * sets and wakes, so an idle wait costs nothing until one of them changes. On kernels without
 * futex_waitv it sleeps with FUTEX_WAIT_BITSET using its own bit (1 << id % 32), in slices of
 * WAIT_SLICE_NS, and cancel() wakes that bit only, so other waiters on the word are rarely
 * disturbed. A wait that was cancelled after it may have consumed a real futexWake passes one wake
 * on, so no wake is lost.
 * --------------------------------------------------------------------------------------------- */

enum { W_WOKEN, W_NOT_EQUAL, W_TIMED_OUT, W_ERROR };

enum { JOB_FUTEX, JOB_POLL };

typedef struct job {
  /* Set at creation, read by the waiter thread. */
  int kind;
  /* JOB_POLL: wait until poll_fd has poll_events; cancel_fd (an eventfd) interrupts the poll. */
  int poll_fd;
  short poll_events;
  int cancel_fd;
  int32_t* addr;
  int32_t expected;
  int64_t deadline;
  uint32_t bit;
  uint32_t id;
  napi_env env;
  napi_threadsafe_function tsfn;
  /* Shared between threads. */
  atomic_int cancelled;
  _Atomic int32_t cancel_word; /* set (and woken) by job_interrupt: the futex_waitv side of `cancelled` */
  atomic_int thread_done;
  atomic_int refs; /* the waiter thread + the tsfn finalizer */
  pthread_mutex_t mu;
  int tsfn_alive; /* under mu: false once the tsfn has been finalized */
  int result;     /* written by the thread before it queues the call */
  int result_errno;
  /* Owned by the environment's JS thread. */
  napi_deferred deferred;
  napi_ref keep; /* the Int32Array, so its memory is not collected while a thread waits on it */
  int settled;
  struct job* next_active;
  struct job* next_queued;
} job;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static job* queue_head = NULL;
static job* queue_tail = NULL;
static int queued = 0, idle_threads = 0, total_threads = 0, running_jobs = 0;
static job* active_jobs = NULL; /* every job whose tsfn is alive, for cancel by id */
static uint32_t next_job_id = 1;

static void pool_init(void) {
  /* For tests of the older kernels' path. */
  const char* slices = getenv("MP_NATIVE_FORCE_WAIT_SLICES");
  if (slices && *slices && strcmp(slices, "0") != 0) atomic_store(&waitv_available, 0);
  /* An empty vector is EINVAL where the call exists. */
  if (syscall(SYS_futex_waitv, NULL, 0, 0, NULL, 0) < 0 && errno == ENOSYS) atomic_store(&waitv_available, 0);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&pool_cv, &attr);
  pthread_condattr_destroy(&attr);
}

static void job_unref(job* j) {
  if (atomic_fetch_sub(&j->refs, 1) == 1) {
    if (j->kind == JOB_POLL) close(j->cancel_fd);
    pthread_mutex_destroy(&j->mu);
    free(j);
  }
}

/* Releases a waiter thread blocked on `j` (after `cancelled` was set). */
static void job_interrupt(job* j) {
  if (j->kind == JOB_POLL) {
    uint64_t one = 1;
    ssize_t ignored = write(j->cancel_fd, &one, sizeof one);
    (void)ignored;
  } else {
    atomic_store(&j->cancel_word, 1);
    syscall(SYS_futex, &j->cancel_word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    futex_wake_bits(j->addr, INT_MAX, j->bit);
  }
}

/* A JOB_POLL: W_WOKEN when the descriptor is ready (or in error: the caller's next call says which). */
static int run_poll_job(job* j, int* err) {
  for (;;) {
    if (atomic_load(&j->cancelled)) return W_TIMED_OUT;
    int wait_ms = -1;
    if (j->deadline >= 0) {
      int64_t left = j->deadline - now_ns();
      if (left <= 0) return W_TIMED_OUT;
      wait_ms = left / 1000000 + 1 > INT_MAX ? INT_MAX : (int)(left / 1000000 + 1);
    }
    struct pollfd p[2] = {{.fd = j->poll_fd, .events = j->poll_events, .revents = 0},
                          {.fd = j->cancel_fd, .events = POLLIN, .revents = 0}};
    int r = poll(p, 2, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return W_ERROR;
    }
    if (p[0].revents) return W_WOKEN;
  }
}

static void run_job(job* j) {
  int result = W_ERROR, err = 0;
  bool woken = false;
  if (j->kind == JOB_POLL) result = run_poll_job(j, &err);
  for (; j->kind == JOB_FUTEX;) {
    if (atomic_load(&j->cancelled)) break;
    int64_t now = now_ns();
    if (j->deadline >= 0 && now >= j->deadline) {
      result = W_TIMED_OUT;
      break;
    }
    long r;
    if (atomic_load(&waitv_available)) {
      r = futex_wait_or_cancel(j->addr, j->expected, &j->cancel_word, j->deadline);
      if (r < 0 && errno == ENOSYS) {
        atomic_store(&waitv_available, 0);
        continue;
      }
      if (r == 1) continue; /* cancelled: the loop's first check ends it */
      if (r < 0 && errno == EAGAIN && atomic_load(&j->cancel_word)) continue;
    } else {
      int64_t slice = now + WAIT_SLICE_NS;
      if (j->deadline >= 0 && j->deadline < slice) slice = j->deadline;
      r = futex_wait_abs(j->addr, j->expected, slice, j->bit);
    }
    if (r == 0) {
      woken = true;
      result = W_WOKEN;
      break;
    }
    err = errno;
    if (err == EAGAIN) {
      result = W_NOT_EQUAL;
      break;
    }
    if (err == ETIMEDOUT || err == EINTR) continue;
    result = W_ERROR;
    break;
  }
  j->result = result;
  j->result_errno = err;
  atomic_store(&j->thread_done, 1);
  pthread_mutex_lock(&j->mu);
  if (atomic_load(&j->cancelled) || !j->tsfn_alive) {
    if (woken) futex_wake_bits(j->addr, 1, FUTEX_BITSET_MATCH_ANY);
  } else {
    napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_nonblocking);
  }
  if (j->tsfn_alive) napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
  pthread_mutex_unlock(&j->mu);
  job_unref(j);
}

static void* waiter_thread(void* arg) {
  (void)arg;
  /* Named, so that a waiter thread can be told apart in /proc/<pid>/task (tests, diagnostics). */
  pthread_setname_np(pthread_self(), "mp-wait");
  pthread_mutex_lock(&pool_mu);
  for (;;) {
    bool timed_out = false;
    while (!queue_head) {
      if (timed_out) {
        total_threads--;
        pthread_mutex_unlock(&pool_mu);
        return NULL;
      }
      struct timespec until = ns_to_ts(now_ns() + IDLE_THREAD_NS);
      idle_threads++;
      int rc = pthread_cond_timedwait(&pool_cv, &pool_mu, &until);
      idle_threads--;
      if (rc == ETIMEDOUT) timed_out = true;
    }
    job* j = queue_head;
    queue_head = j->next_queued;
    if (!queue_head) queue_tail = NULL;
    queued--;
    running_jobs++;
    pthread_mutex_unlock(&pool_mu);
    run_job(j);
    pthread_mutex_lock(&pool_mu);
    running_jobs--;
  }
}

static int pool_submit(job* j) {
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool_mu);
  j->next_queued = NULL;
  if (queue_tail)
    queue_tail->next_queued = j;
  else
    queue_head = j;
  queue_tail = j;
  queued++;
  int rc = 0;
  if (idle_threads >= queued) {
    pthread_cond_signal(&pool_cv);
  } else {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, WAITER_STACK_SIZE);
    /* The thread must not take signals meant for Node's main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    rc = pthread_create(&t, &attr, waiter_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
      total_threads++;
    } else {
      /* Take the job back out of the queue (it is the tail). */
      job** p = &queue_head;
      job* prev = NULL;
      while (*p != j) {
        prev = *p;
        p = &(*p)->next_queued;
      }
      *p = NULL;
      queue_tail = prev;
      queued--;
    }
  }
  pthread_mutex_unlock(&pool_mu);
  return rc;
}

static const char* result_string(int r) {
  switch (r) {
    case W_WOKEN: return "ok";
    case W_NOT_EQUAL: return "not-equal";
    case W_TIMED_OUT: return "timed-out";
    default: return "error";
  }
}

/* Runs on the JS thread with the waiter thread's result. */
static void job_call_js(napi_env env, napi_value js_cb, void* context, void* data) {
  (void)js_cb;
  (void)context;
  job* j = data;
  if (!env) return; /* the environment is being torn down */
  if (j->settled) {
    /* cancel() came first: this wait may have consumed a real wake, so pass it on. */
    if (j->kind == JOB_FUTEX && j->result == W_WOKEN) futex_wake_bits(j->addr, 1, FUTEX_BITSET_MATCH_ANY);
    return;
  }
  j->settled = 1;
  if (j->result == W_ERROR) {
    napi_value err, code, msg;
    char text[256];
    snprintf(text, sizeof text, "[Errno %d] %s", j->result_errno, strerror(j->result_errno));
    napi_create_string_utf8(env, errno_code(j->result_errno), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, code, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  } else {
    napi_resolve_deferred(env, j->deferred, str(env, result_string(j->result)));
  }
}

static void active_remove(job* j) {
  pthread_mutex_lock(&pool_mu);
  for (job** p = &active_jobs; *p; p = &(*p)->next_active) {
    if (*p == j) {
      *p = j->next_active;
      break;
    }
  }
  pthread_mutex_unlock(&pool_mu);
}

/* The tsfn is gone: after the thread released it, or when the environment is torn down. */
static void job_finalize(napi_env env, void* data, void* hint) {
  (void)hint;
  job* j = data;
  active_remove(j);
  pthread_mutex_lock(&j->mu);
  j->tsfn_alive = 0;
  pthread_mutex_unlock(&j->mu);
  if (!atomic_load(&j->thread_done)) {
    /* Environment teardown with the wait still pending: release the thread. */
    atomic_store(&j->cancelled, 1);
    job_interrupt(j);
  }
  if (env && j->keep) napi_delete_reference(env, j->keep);
  j->keep = NULL;
  job_unref(j);
}

/* Gives `j` (its wait described, refs 2) an id and a tsfn and hands it to a waiter thread; returns
 * { promise, id } or throws (and frees the job). */
static napi_value start_job(napi_env env, job* j, bool ref, napi_value keep, const char* name) {
  napi_value promise, result, v;
  napi_deferred deferred;
  CHECK(napi_create_promise(env, &deferred, &promise));
  pthread_mutex_init(&j->mu, NULL);
  j->env = env;
  j->deferred = deferred;
  atomic_init(&j->refs, 2);
  atomic_init(&j->cancelled, 0);
  atomic_init(&j->cancel_word, 0);
  atomic_init(&j->thread_done, 0);
  j->tsfn_alive = 1;
  pthread_mutex_lock(&pool_mu);
  j->id = next_job_id++;
  if (next_job_id == 0) next_job_id = 1;
  pthread_mutex_unlock(&pool_mu);
  j->bit = 1u << (j->id % 32);

  napi_status s = napi_create_threadsafe_function(env, NULL, NULL, str(env, name), 0, 1, j, job_finalize, j,
                                                  job_call_js, &j->tsfn);
  if (s != napi_ok) {
    if (j->kind == JOB_POLL) close(j->cancel_fd);
    pthread_mutex_destroy(&j->mu);
    free(j);
    CHECK(s);
  }
  if (keep) napi_create_reference(env, keep, 1, &j->keep);
  if (!ref) napi_unref_threadsafe_function(env, j->tsfn);
  pthread_mutex_lock(&pool_mu);
  j->next_active = active_jobs;
  active_jobs = j;
  pthread_mutex_unlock(&pool_mu);

  int rc = pool_submit(j);
  if (rc != 0) {
    /* No thread: settle now, and let the tsfn finalizer free the job. */
    j->settled = 1;
    atomic_store(&j->thread_done, 1);
    napi_release_threadsafe_function(j->tsfn, napi_tsfn_release);
    job_unref(j); /* the thread's reference */
    throw_errno(env, rc, "pthread_create", NULL);
    return NULL;
  }
  CHECK(napi_create_object(env, &result));
  CHECK(napi_set_named_property(env, result, "promise", promise));
  CHECK(napi_create_uint32(env, j->id, &v));
  CHECK(napi_set_named_property(env, result, "id", v));
  return result;
}

static bool optional_bool(napi_env env, size_t argc, napi_value* argv, size_t i, bool fallback) {
  napi_valuetype t;
  bool v = fallback;
  if (argc > i && napi_typeof(env, argv[i], &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, argv[i], &v);
  return v;
}

/* futexWaitAsync(int32array, index, expected, timeoutMs, ref = true) -> { promise, id } */
static napi_value futex_wait_async_js(napi_env env, napi_callback_info info) {
  wait_args a;
  if (!get_wait_args(env, info, "futexWaitAsync(int32array, index, expected, timeoutMs, ref)", &a)) return NULL;
  bool ref = optional_bool(env, a.argc, a.argv, 4, true);

  if (atomic_load((_Atomic int32_t*)a.addr) != a.expected) {
    napi_value promise, result, v;
    napi_deferred deferred;
    CHECK(napi_create_promise(env, &deferred, &promise));
    CHECK(napi_resolve_deferred(env, deferred, str(env, "not-equal")));
    CHECK(napi_create_object(env, &result));
    CHECK(napi_set_named_property(env, result, "promise", promise));
    CHECK(napi_create_uint32(env, 0, &v));
    CHECK(napi_set_named_property(env, result, "id", v));
    return result;
  }

  job* j = calloc(1, sizeof *j);
  if (!j) {
    throw_errno(env, ENOMEM, "calloc", NULL);
    return NULL;
  }
  j->kind = JOB_FUTEX;
  j->addr = a.addr;
  j->expected = a.expected;
  j->deadline = deadline_from_ms(a.ms);
  return start_job(env, j, ref, a.argv[0], "multiprocessing-ts futexWaitAsync");
}

/* pollAsync(fd, writable, timeoutMs, ref = true) -> { promise, id }: waits on a waiter thread until
 * `fd` is writable (or readable), settling with 'ok' (ready, or in error), 'timed-out' or, after
 * futexCancel(id), 'cancelled'. Cancel before closing the descriptor. */
static napi_value poll_async_js(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "pollAsync(fd, writable, timeoutMs, ref)");
    return NULL;
  }
  int cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (cancel_fd < 0) {
    throw_errno(env, errno, "eventfd", NULL);
    return NULL;
  }
  job* j = calloc(1, sizeof *j);
  if (!j) {
    close(cancel_fd);
    throw_errno(env, ENOMEM, "calloc", NULL);
    return NULL;
  }
  j->kind = JOB_POLL;
  j->poll_fd = fd;
  j->poll_events = optional_bool(env, argc, argv, 1, true) ? POLLOUT : POLLIN;
  j->cancel_fd = cancel_fd;
  j->deadline = deadline_from_ms(optional_number(env, argc, argv, 2, -1));
  return start_job(env, j, optional_bool(env, argc, argv, 3, true), NULL, "multiprocessing-ts pollAsync");
}

static job* find_job(napi_env env, napi_value id_value) {
  uint32_t id = 0;
  if (napi_get_value_uint32(env, id_value, &id) != napi_ok || id == 0) return NULL;
  job* found = NULL;
  pthread_mutex_lock(&pool_mu);
  for (job* j = active_jobs; j; j = j->next_active)
    if (j->id == id && j->env == env) {
      found = j;
      break;
    }
  pthread_mutex_unlock(&pool_mu);
  /* Only this environment's thread finalizes its jobs, so `found` stays valid in this call. */
  return found;
}

/* futexCancel(id) -> boolean: settles the wait with 'cancelled' and releases its thread. */
static napi_value futex_cancel_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  job* j = argc >= 1 ? find_job(env, argv[0]) : NULL;
  if (!j || j->settled) {
    CHECK(napi_get_boolean(env, false, &v));
    return v;
  }
  j->settled = 1;
  atomic_store(&j->cancelled, 1);
  if (!atomic_load(&j->thread_done)) job_interrupt(j);
  napi_unref_threadsafe_function(env, j->tsfn);
  napi_resolve_deferred(env, j->deferred, str(env, "cancelled"));
  CHECK(napi_get_boolean(env, true, &v));
  return v;
}

/* futexRef(id, ref) -> boolean: whether a pending wait keeps the event loop alive. */
static napi_value futex_ref_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  job* j = argc >= 2 ? find_job(env, argv[0]) : NULL;
  if (!j || j->settled) {
    CHECK(napi_get_boolean(env, false, &v));
    return v;
  }
  if (get_bool(env, argv[1]))
    napi_ref_threadsafe_function(env, j->tsfn);
  else
    napi_unref_threadsafe_function(env, j->tsfn);
  CHECK(napi_get_boolean(env, true, &v));
  return v;
}

/* asyncWaitStats() -> { threads, idle, pending, waitsInSlices }: for tests and diagnostics.
 * waitsInSlices: futex waits re-check for cancellation every WAIT_SLICE_NS (no futex_waitv). */
static napi_value async_wait_stats_js(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&pool_mu);
  int threads = total_threads, idle = idle_threads, pending = queued + running_jobs;
  pthread_mutex_unlock(&pool_mu);
  napi_value result, v;
  CHECK(napi_create_object(env, &result));
  CHECK(napi_create_int32(env, threads, &v));
  CHECK(napi_set_named_property(env, result, "threads", v));
  CHECK(napi_create_int32(env, idle, &v));
  CHECK(napi_set_named_property(env, result, "idle", v));
  CHECK(napi_create_int32(env, pending, &v));
  CHECK(napi_set_named_property(env, result, "pending", v));
  pthread_once(&pool_once, pool_init);
  CHECK(napi_get_boolean(env, !atomic_load(&waitv_available), &v));
  CHECK(napi_set_named_property(env, result, "waitsInSlices", v));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * socketpair
 * --------------------------------------------------------------------------------------------- */

/* socketpair() -> [fd, fd]: AF_UNIX, SOCK_STREAM, close-on-exec. */
static napi_value socketpair_js(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_errno(env, errno, "socketpair", NULL);
    return NULL;
  }
  napi_value arr, v;
  CHECK(napi_create_array_with_length(env, 2, &arr));
  for (uint32_t i = 0; i < 2; i++) {
    CHECK(napi_create_int32(env, fds[i], &v));
    CHECK(napi_set_element(env, arr, i, v));
  }
  return arr;
}

/* Fills a sockaddr_un from a JS path string; throws and returns false when it does not fit. */
static bool unix_address(napi_env env, napi_value path, struct sockaddr_un* addr) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  size_t len = 0;
  if (napi_get_value_string_utf8(env, path, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "path must be a string");
    return false;
  }
  if (len == 0 || len >= sizeof addr->sun_path) {
    throw_errno(env, ENAMETOOLONG, "bind", NULL);
    return false;
  }
  napi_get_value_string_utf8(env, path, addr->sun_path, sizeof addr->sun_path, &len);
  return true;
}

/* unixListen(path, backlog) -> fd: a bound, listening AF_UNIX stream socket (close-on-exec), so
 * that clients can connect before the process that will accept() has even started. */
static napi_value unix_listen_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct sockaddr_un addr;
  if (argc < 1 || !unix_address(env, argv[0], &addr)) return NULL;
  int32_t backlog = 128;
  if (argc >= 2) napi_get_value_int32(env, argv[1], &backlog);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", NULL);
    return NULL;
  }
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "bind", addr.sun_path);
    return NULL;
  }
  CHECK(napi_create_int32(env, fd, &v));
  return v;
}

/* unixConnect(path) -> fd: a blocking, connected AF_UNIX stream socket (close-on-exec), for
 * synchronous writes with fs.writeSync. */
static napi_value unix_connect_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct sockaddr_un addr;
  if (argc < 1 || !unix_address(env, argv[0], &addr)) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", NULL);
    return NULL;
  }
  int rc;
  do rc = connect(fd, (struct sockaddr*)&addr, sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "connect", addr.sun_path);
    return NULL;
  }
  CHECK(napi_create_int32(env, fd, &v));
  return v;
}

/* ------------------------------------------------------------------------------------------------
 * Blocking socket read (Connection.recvSync / pollSync)
 * --------------------------------------------------------------------------------------------- */

/* The uint8array argument argv[i]; throws (and returns false) if it is not one. */
static bool get_bytes(napi_env env, size_t argc, napi_value* argv, size_t i, char** data, size_t* length,
                      const char* usage) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t offset = 0;
  napi_value ab;
  if (argc > i) napi_is_typedarray(env, argv[i], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[i], &type, length, (void**)data, &ab, &offset) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return false;
  }
  return true;
}

#define MAX_WRITE_FDS 64

/* ------------------------------------------------------------------------------------------------
 * Interrupting a worker thread that waits in poll()
 *
 * Worker.terminate() stops a thread's JavaScript, and V8 interrupts an Atomics.wait, but nothing
 * interrupts a system call: a worker thread blocked in readSocket (recvSync), writeSocket (a
 * blocking send) or recvFds would never end. So a worker thread that loads the addon gets an
 * eventfd (threadInterruptible(threadId), from native.ts), which every poll() of this file also
 * watches; interruptThread(threadId), called by whoever terminates the thread, makes it readable,
 * and the call then throws EINTR back to JavaScript, where the termination takes effect. A
 * terminate() that comes before the thread has registered leaves the eventfd signalled for it.
 * forgetThread(threadId) drops an entry the thread never claimed (it exited first); a thread's own
 * entry goes with its environment.
 * --------------------------------------------------------------------------------------------- */

typedef struct interrupt_entry {
  double thread_id;
  int efd;
  struct interrupt_entry* next;
} interrupt_entry;

static pthread_mutex_t interrupts_mu = PTHREAD_MUTEX_INITIALIZER;
static interrupt_entry* interrupts = NULL;
/* This thread's eventfd, or -1 (the main thread, or a worker that has not registered). */
static __thread int thread_interrupt_fd = -1;

/* The entry of `thread_id`, made (with its eventfd) if there is none; NULL (errno set) if the
 * eventfd cannot be made. Call with interrupts_mu held. */
static interrupt_entry* interrupt_entry_locked(double thread_id) {
  for (interrupt_entry* e = interrupts; e != NULL; e = e->next) {
    if (e->thread_id == thread_id) return e;
  }
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (efd < 0) return NULL;
  interrupt_entry* e = malloc(sizeof *e);
  if (!e) {
    close(efd);
    errno = ENOMEM;
    return NULL;
  }
  *e = (interrupt_entry){.thread_id = thread_id, .efd = efd, .next = interrupts};
  interrupts = e;
  return e;
}

static void interrupt_forget(double thread_id) {
  pthread_mutex_lock(&interrupts_mu);
  for (interrupt_entry** p = &interrupts; *p != NULL; p = &(*p)->next) {
    if ((*p)->thread_id != thread_id) continue;
    interrupt_entry* e = *p;
    *p = e->next;
    close(e->efd);
    free(e);
    break;
  }
  pthread_mutex_unlock(&interrupts_mu);
}

static void interrupt_cleanup_hook(void* arg) {
  double* thread_id = arg;
  thread_interrupt_fd = -1;
  interrupt_forget(*thread_id);
  free(thread_id);
}

/* The threadId argument of the three functions below; false after throwing. */
static bool get_thread_id(napi_env env, napi_callback_info info, const char* usage, double* out) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < 1 || napi_get_value_double(env, argv[0], out) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return false;
  }
  return true;
}

/* threadInterruptible(threadId): this (worker) thread's waits can be interrupted from now on. */
static napi_value thread_interruptible_js(napi_env env, napi_callback_info info) {
  double thread_id;
  if (!get_thread_id(env, info, "threadInterruptible(threadId)", &thread_id)) return NULL;
  if (thread_interrupt_fd >= 0) return NULL;
  double* hook_arg = malloc(sizeof *hook_arg);
  if (!hook_arg) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  pthread_mutex_lock(&interrupts_mu);
  interrupt_entry* e = interrupt_entry_locked(thread_id);
  int err = errno;
  if (e) thread_interrupt_fd = e->efd;
  pthread_mutex_unlock(&interrupts_mu);
  if (!e) {
    free(hook_arg);
    throw_errno(env, err, "eventfd", NULL);
    return NULL;
  }
  *hook_arg = thread_id;
  napi_add_env_cleanup_hook(env, interrupt_cleanup_hook, hook_arg);
  return NULL;
}

/* interruptThread(threadId): the thread's wait in this file (now or next) throws EINTR. */
static napi_value interrupt_thread_js(napi_env env, napi_callback_info info) {
  double thread_id;
  if (!get_thread_id(env, info, "interruptThread(threadId)", &thread_id)) return NULL;
  pthread_mutex_lock(&interrupts_mu);
  interrupt_entry* e = interrupt_entry_locked(thread_id);
  if (e) {
    uint64_t one = 1;
    ssize_t ignored = write(e->efd, &one, sizeof one);
    (void)ignored;
  }
  pthread_mutex_unlock(&interrupts_mu);
  return NULL;
}

/* forgetThread(threadId): the thread has exited; drop its entry if it is still there. */
static napi_value forget_thread_js(napi_env env, napi_callback_info info) {
  double thread_id;
  if (!get_thread_id(env, info, "forgetThread(threadId)", &thread_id)) return NULL;
  interrupt_forget(thread_id);
  return NULL;
}

/* After a non-blocking call on `fd` failed (errno set): for EINTR returns true at once, for EAGAIN
 * waits with poll() until `fd` has `events` or the `deadline` (now_ns() clock; < 0: none) passes
 * and returns true; otherwise throws (naming `syscall_name`) and returns false. */
static bool wait_until_ready(napi_env env, int fd, short events, int64_t deadline, const char* syscall_name) {
  if (errno == EINTR) return true;
  if (errno != EAGAIN && errno != EWOULDBLOCK) {
    throw_errno(env, errno, syscall_name, NULL);
    return false;
  }
  int wait_ms = -1;
  if (deadline >= 0) {
    int64_t left = deadline - now_ns();
    wait_ms = left <= 0 ? 0 : left / 1000000 + 1 > INT_MAX ? INT_MAX : (int)(left / 1000000 + 1);
  }
  struct pollfd pfd[2] = {{.fd = fd, .events = events, .revents = 0},
                          {.fd = thread_interrupt_fd, .events = POLLIN, .revents = 0}};
  if (poll(pfd, thread_interrupt_fd >= 0 ? 2 : 1, wait_ms) < 0 && errno != EINTR) {
    throw_errno(env, errno, "poll", NULL);
    return false;
  }
  if (pfd[1].revents) {
    throw_errno(env, EINTR, syscall_name, NULL);
    return false;
  }
  return true;
}

typedef struct {
  napi_value argv[6];
  size_t argc;
  int32_t fd;
  char* data;
  size_t length;
} socket_args;

/* The (fd, uint8array, ...) of readSocket and writeSocket (all the arguments stay in out->argv);
 * false after throwing. */
static bool get_socket_args(napi_env env, napi_callback_info info, const char* usage, socket_args* out) {
  out->argc = 6;
  if (napi_get_cb_info(env, info, &out->argc, out->argv, NULL, NULL) != napi_ok) return false;
  if (out->argc < 2 || napi_get_value_int32(env, out->argv[0], &out->fd) != napi_ok || out->fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return false;
  }
  return get_bytes(env, out->argc, out->argv, 1, &out->data, &out->length, usage);
}

/* readSocket(fd, uint8array, timeoutMs, writeFds?, peek?, spinMs?) -> bytes read (> 0), 0 at end of stream, -1
 * when nothing arrived within timeoutMs (< 0: wait forever), or -2 as soon as one of `writeFds`
 * (sockets with sends still to write) can take more. The socket stays as libuv set it up
 * (non-blocking): each read is MSG_DONTWAIT and the waiting is done with poll(), so the event loop,
 * which is blocked in this call anyway, finds nothing changed but the bytes taken. With `peek`
 * (MSG_PEEK) nothing is taken: a select() that another process sharing the socket cannot notice. */
static napi_value read_socket_js(napi_env env, napi_callback_info info) {
  napi_value v, item;
  socket_args a;
  if (!get_socket_args(env, info, "readSocket(fd, uint8array, timeoutMs, writeFds, peek, spinMs)", &a)) return NULL;
  size_t argc = a.argc;
  napi_value* argv = a.argv;
  int32_t fd = a.fd;
  char* data = a.data;
  size_t length = a.length;
  if (length == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "readSocket needs room for at least one byte");
    return NULL;
  }
  struct pollfd p[2 + MAX_WRITE_FDS];
  nfds_t n_fds = 1;
  p[0] = (struct pollfd){.fd = fd, .events = POLLIN, .revents = 0};
  bool is_array = false;
  uint32_t n_write = 0;
  if (argc >= 4) napi_is_array(env, argv[3], &is_array);
  if (is_array) napi_get_array_length(env, argv[3], &n_write);
  for (uint32_t i = 0; i < n_write && i < MAX_WRITE_FDS; i++) {
    int32_t wfd = -1;
    CHECK(napi_get_element(env, argv[3], i, &item));
    if (napi_get_value_int32(env, item, &wfd) != napi_ok || wfd < 0) continue;
    p[n_fds++] = (struct pollfd){.fd = wfd, .events = POLLOUT, .revents = 0};
  }
  /* The last entry: this thread's interrupt (a terminate()), when it has one. */
  nfds_t n_polled = n_fds;
  if (thread_interrupt_fd >= 0) p[n_polled++] = (struct pollfd){.fd = thread_interrupt_fd, .events = POLLIN, .revents = 0};
  int recv_flags = optional_bool(env, argc, argv, 4, false) ? MSG_PEEK : 0;
  int64_t deadline = deadline_from_ms(optional_number(env, argc, argv, 2, -1));
  /* A peer that answers within microseconds (a request/response loop on another core) is caught
   * by retrying for a moment before sleeping: a wake-up from poll() costs tens of microseconds.
   * The caller may shorten it (0: sleep at once), never lengthen it: spinning only pays while the
   * peer has a CPU of its own. */
  double spin_ms = optional_number(env, argc, argv, 5, READ_SPIN_NS / 1e6);
  int64_t spin_ns = !(spin_ms > 0) ? 0 : spin_ms * 1e6 < READ_SPIN_NS ? (int64_t)(spin_ms * 1e6) : READ_SPIN_NS;
  int64_t spin_until = now_ns() + spin_ns;
  if (deadline >= 0 && deadline < spin_until) spin_until = deadline;
  for (;;) {
    ssize_t n = recv(fd, data, length, MSG_DONTWAIT | recv_flags);
    if (n >= 0) {
      CHECK(napi_create_double(env, (double)n, &v));
      return v;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      throw_errno(env, errno, "recv", NULL);
      return NULL;
    }
    if (now_ns() < spin_until) {
      /* While spinning, a socket with sends to write that can take more ends the wait as well. */
      if (n_fds > 1) {
        for (nfds_t i = 1; i < n_fds; i++) p[i].revents = 0;
        if (poll(p + 1, n_fds - 1, 0) > 0) {
          CHECK(napi_create_int32(env, -2, &v));
          return v;
        }
      }
      cpu_relax();
      continue;
    }
    int wait_ms = -1;
    if (deadline >= 0) {
      int64_t left = deadline - now_ns();
      if (left <= 0) {
        CHECK(napi_create_int32(env, -1, &v));
        return v;
      }
      wait_ms = left / 1000000 + 1 > INT_MAX ? INT_MAX : (int)(left / 1000000 + 1);
    }
    for (nfds_t i = 0; i < n_polled; i++) p[i].revents = 0;
    if (poll(p, n_polled, wait_ms) < 0 && errno != EINTR) {
      throw_errno(env, errno, "poll", NULL);
      return NULL;
    }
    if (n_polled > n_fds && p[n_fds].revents) {
      throw_errno(env, EINTR, "poll", NULL);
      return NULL;
    }
    for (nfds_t i = 1; i < n_fds; i++) {
      if (p[i].revents) {
        CHECK(napi_create_int32(env, -2, &v));
        return v;
      }
    }
  }
}

/* writeSocket(fd, uint8array, wait = true) -> bytes written: all of them, waiting with poll() while
 * the socket is full; with wait false, as many as the socket takes now; with a number of
 * milliseconds (< 0: for ever), as many as it takes within that time. */
static napi_value write_socket_js(napi_env env, napi_callback_info info) {
  napi_value v;
  socket_args a;
  if (!get_socket_args(env, info, "writeSocket(fd, uint8array, wait)", &a)) return NULL;
  int32_t fd = a.fd;
  char* data = a.data;
  size_t length = a.length;
  napi_valuetype t = napi_undefined;
  if (a.argc > 2) napi_typeof(env, a.argv[2], &t);
  int64_t deadline = t == napi_number ? deadline_from_ms(optional_number(env, a.argc, a.argv, 2, -1))
                     : optional_bool(env, a.argc, a.argv, 2, true) ? -1
                     : 0;
  size_t done = 0;
  while (done < length) {
    ssize_t n = send(fd, data + done, length - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      done += (size_t)n;
      continue;
    }
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && deadline >= 0 && now_ns() >= deadline) break;
    if (!wait_until_ready(env, fd, POLLOUT, deadline, "send")) return NULL;
  }
  CHECK(napi_create_double(env, (double)done, &v));
  return v;
}

/* ------------------------------------------------------------------------------------------------
 * Readiness watches on the event loop (a shared Pipe end reads nothing ahead)
 *
 * watchReadable(fd, callback) -> watch: a libuv poll handle, on the calling environment's own
 * loop, on a duplicate of `fd` (libuv allows one watcher per descriptor, and Node's stream may be
 * registered on `fd` itself for its writes). `callback(events)` runs on the loop whenever the
 * socket is readable (or at its end, or in error: events < 0) while the watch is active; it reads
 * nothing, so another process reading the same socket is not robbed. The poll is level-triggered:
 * a callback that leaves the bytes where they are is called again on the next loop turn, until
 * the watch is stopped. watchSet(watch, active, ref) starts/stops it and says whether it keeps the
 * loop alive; watchClose(watch) closes the duplicate (the socket's peer sees EOF only once every
 * descriptor is closed, so close the watch with the socket).
 * --------------------------------------------------------------------------------------------- */

typedef struct fd_watch {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback;
  napi_async_context async_context;
  int fd;
  int active;
  int closing;
  int in_callback; /* the async context is in use: release it after the callback */
  int napi_released;
  int refs; /* the JS external + the libuv handle (both on the loop's thread) */
} fd_watch;

static void watch_unref(fd_watch* w) {
  if (--w->refs == 0) free(w);
}

static void watch_on_close(uv_handle_t* handle) {
  fd_watch* w = handle->data;
  close(w->fd);
  watch_unref(w);
}

static void watch_cleanup_hook(void* arg);

/* Drops the callback and its async context (not while the callback runs: it uses them). */
static void watch_release_napi(fd_watch* w) {
  if (w->napi_released || w->in_callback) return;
  w->napi_released = 1;
  napi_delete_reference(w->env, w->callback);
  napi_async_destroy(w->env, w->async_context);
}

static int placeholder_fd = -1;
static pthread_once_t placeholder_once = PTHREAD_ONCE_INIT;
static void open_placeholder(void) { placeholder_fd = open("/dev/null", O_RDONLY | O_CLOEXEC); }

/* Stops and closes the handle (once); `in_hook`: the environment is being torn down (it frees
 * the Node-API objects itself). The duplicate lets go of the socket at once (the peer's EOF waits
 * for it): its number is pointed at /dev/null until libuv, closing the handle on a later loop
 * turn, is done with it, so that the number is not reused meanwhile. */
static void watch_close(fd_watch* w, bool in_hook) {
  if (w->closing) return;
  w->closing = 1;
  if (!in_hook) {
    napi_remove_env_cleanup_hook(w->env, watch_cleanup_hook, w);
    watch_release_napi(w);
  } else {
    w->napi_released = 1;
  }
  uv_poll_stop(&w->handle);
  pthread_once(&placeholder_once, open_placeholder);
  if (placeholder_fd >= 0) dup3(placeholder_fd, w->fd, O_CLOEXEC);
  uv_close((uv_handle_t*)&w->handle, watch_on_close);
}

static void watch_cleanup_hook(void* arg) { watch_close(arg, true); }

static void watch_finalize(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  fd_watch* w = data;
  watch_close(w, false);
  watch_unref(w);
}

static void watch_on_poll(uv_poll_t* handle, int status, int events) {
  fd_watch* w = handle->data;
  if (w->closing) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg;
  if (napi_get_reference_value(env, w->callback, &fn) == napi_ok && fn != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, status < 0 ? -1 : events, &arg) == napi_ok) {
    /* make_callback, not call_function: it runs the microtasks the callback queued (promises). */
    w->in_callback = 1;
    napi_status status = napi_make_callback(env, w->async_context, recv, fn, 1, &arg, NULL);
    w->in_callback = 0;
    if (status == napi_pending_exception) {
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
  /* Closed by the callback (or by what its microtasks ran). */
  if (w->closing) watch_release_napi(w);
}

static fd_watch* get_watch(napi_env env, napi_value v) {
  void* data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a watch from watchReadable()");
    return NULL;
  }
  return data;
}

static napi_value watch_readable_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "watchReadable(fd, callback)");
    return NULL;
  }
  uv_loop_t* loop = NULL;
  CHECK(napi_get_uv_event_loop(env, &loop));
  fd_watch* w = calloc(1, sizeof *w);
  if (!w) {
    throw_errno(env, ENOMEM, "calloc", NULL);
    return NULL;
  }
  w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (w->fd < 0) {
    int err = errno;
    free(w);
    throw_errno(env, err, "fcntl", NULL);
    return NULL;
  }
  int rc = uv_poll_init(loop, &w->handle, w->fd);
  if (rc != 0) {
    close(w->fd);
    free(w);
    throw_errno(env, -rc, "uv_poll_init", NULL);
    return NULL;
  }
  w->handle.data = w;
  w->env = env;
  w->refs = 2;
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_async_init(env, NULL, str(env, "multiprocessing-ts watchReadable"), &w->async_context);
  napi_add_env_cleanup_hook(env, watch_cleanup_hook, w);
  CHECK(napi_create_external(env, w, watch_finalize, NULL, &result));
  return result;
}

static napi_value watch_set_js(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fd_watch* w = argc >= 1 ? get_watch(env, argv[0]) : NULL;
  if (!w) return NULL;
  if (w->closing) return NULL;
  bool active = optional_bool(env, argc, argv, 1, false);
  bool ref = optional_bool(env, argc, argv, 2, true);
  if (active && !w->active) {
    int rc = uv_poll_start(&w->handle, UV_READABLE, watch_on_poll);
    if (rc != 0) {
      throw_errno(env, -rc, "uv_poll_start", NULL);
      return NULL;
    }
  } else if (!active && w->active) {
    uv_poll_stop(&w->handle);
  }
  w->active = active;
  if (ref)
    uv_ref((uv_handle_t*)&w->handle);
  else
    uv_unref((uv_handle_t*)&w->handle);
  return NULL;
}

static napi_value watch_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fd_watch* w = argc >= 1 ? get_watch(env, argv[0]) : NULL;
  if (w) watch_close(w, false);
  return NULL;
}

/* ------------------------------------------------------------------------------------------------
 * Descriptor passing (the forkserver hands sockets to a warm child without the event loop)
 * --------------------------------------------------------------------------------------------- */

#define MAX_PASSED_FDS 64

/* sendFds(sock, [fd, ...]): one sendmsg with SCM_RIGHTS (and one byte of data), waiting with
 * poll() while the socket is full. */
static napi_value send_fds_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], item;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t sock = -1;
  bool is_array = false;
  uint32_t n = 0;
  if (argc >= 2) napi_is_array(env, argv[1], &is_array);
  if (argc < 2 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || sock < 0 || !is_array ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || n == 0 || n > MAX_PASSED_FDS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sendFds(sock, [fd, ...]) takes 1 to 64 descriptors");
    return NULL;
  }
  int fds[MAX_PASSED_FDS];
  for (uint32_t i = 0; i < n; i++) {
    CHECK(napi_get_element(env, argv[1], i, &item));
    if (napi_get_value_int32(env, item, &fds[i]) != napi_ok || fds[i] < 0) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "sendFds: descriptors must be non-negative integers");
      return NULL;
    }
  }
  char byte = 'F';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n);
  memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n);
  for (;;) {
    if (sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) return NULL;
    if (!wait_until_ready(env, sock, POLLOUT, -1, "sendmsg")) return NULL;
  }
}

/* dupFd(fd) -> a duplicate of `fd`, close-on-exec (a descriptor kept for another process to fetch). */
static napi_value dup_fd_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dupFd(fd)");
    return NULL;
  }
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    throw_errno(env, errno, "fcntl", NULL);
    return NULL;
  }
  CHECK(napi_create_int32(env, copy, &v));
  return v;
}

/* recvFds(sock, count) -> [fd, ...]: the descriptors of one sendFds (close-on-exec), waiting for
 * them. Fewer than `count` (or none: the sender went away) is an OSError. */
static napi_value recv_fds_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], arr, v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t sock = -1, count = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &sock) != napi_ok || sock < 0 ||
      napi_get_value_int32(env, argv[1], &count) != napi_ok || count < 1 || count > MAX_PASSED_FDS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "recvFds(sock, count) takes 1 to 64 descriptors");
    return NULL;
  }
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
    struct cmsghdr align;
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
  ssize_t r;
  for (;;) {
    r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (r >= 0) break;
    if (!wait_until_ready(env, sock, POLLIN, -1, "recvmsg")) return NULL;
  }
  int got = 0;
  int fds[MAX_PASSED_FDS];
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k && got < MAX_PASSED_FDS; i++) memcpy(&fds[got++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (r == 0 || got != count || (msg.msg_flags & MSG_CTRUNC)) {
    for (int i = 0; i < got; i++) close(fds[i]);
    throw_errno(env, r == 0 ? EPIPE : EBADMSG, "recvmsg", NULL);
    return NULL;
  }
  CHECK(napi_create_array_with_length(env, (size_t)got, &arr));
  for (int i = 0; i < got; i++) {
    CHECK(napi_create_int32(env, fds[i], &v));
    CHECK(napi_set_element(env, arr, (uint32_t)i, v));
  }
  return arr;
}

/* ------------------------------------------------------------------------------------------------
 * Parent death
 * --------------------------------------------------------------------------------------------- */

/* setParentDeathSignal(signal, expectedParentPid) -> boolean: asks the kernel to send `signal` to
 * this process when its parent dies (prctl PR_SET_PDEATHSIG), so a child busy in synchronous code
 * still goes with its parent. Returns false if the parent is already gone (the caller exits). */
static napi_value set_parent_death_signal_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t sig = 0, expected = 0;
  CHECK(napi_get_value_int32(env, argv[0], &sig));
  CHECK(napi_get_value_int32(env, argv[1], &expected));
  if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) != 0) {
    throw_errno(env, errno, "prctl", NULL);
    return NULL;
  }
  napi_value result;
  CHECK(napi_get_boolean(env, getppid() == (pid_t)expected, &result));
  return result;
}

/* ------------------------------------------------------------------------------------------------
 * Module
 * --------------------------------------------------------------------------------------------- */

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&sab_once, find_external_sab);
  napi_value sab_supported, page;
  CHECK(napi_get_boolean(env, create_external_sab != NULL && !force_arraybuffer, &sab_supported));
  CHECK(napi_create_int32(env, (int32_t)sysconf(_SC_PAGESIZE), &page));
  napi_property_descriptor props[] = {
      {"shmOpen", NULL, shm_open_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shmUnlink", NULL, shm_unlink_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shmClose", NULL, shm_close_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWait", NULL, futex_wait_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWake", NULL, futex_wake_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexWaitAsync", NULL, futex_wait_async_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pollAsync", NULL, poll_async_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexCancel", NULL, futex_cancel_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"futexRef", NULL, futex_ref_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"asyncWaitStats", NULL, async_wait_stats_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketpair", NULL, socketpair_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixListen", NULL, unix_listen_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unixConnect", NULL, unix_connect_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readSocket", NULL, read_socket_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeSocket", NULL, write_socket_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchReadable", NULL, watch_readable_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchSet", NULL, watch_set_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"watchClose", NULL, watch_close_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dupFd", NULL, dup_fd_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, send_fds_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvFds", NULL, recv_fds_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setParentDeathSignal", NULL, set_parent_death_signal_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"threadInterruptible", NULL, thread_interruptible_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"interruptThread", NULL, interrupt_thread_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"forgetThread", NULL, forget_thread_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sharedArrayBufferSupported", NULL, NULL, NULL, NULL, sab_supported, napi_enumerable, NULL},
      {"pageSize", NULL, NULL, NULL, NULL, page, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
