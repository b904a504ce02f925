/*
 * hostile.h - shared by the hostile-host programs (foreign allocators, threads, fork, long
 * runs). Include it first. Each program is built once without the library (run with
 * LD_PRELOAD) and, where run.py needs it, once linked with -lshmtrace; the C API is looked up
 * at run time (dlsym), so one source serves both.
 *
 * 1. Failures: FAIL/EXPECT print one line `FAIL <prog>[pid]: file:line: ...` on stdout (one
 *    write, so children and threads never interleave) and make the process exit 1 at the end.
 *    MUST stops the process at once.
 *
 * 2. Journal ($HOSTILE_JOURNAL, O_APPEND, one write(2) per line): every thread counts the
 *    hooked calls it makes itself (hz_calls / hz_enters, indexed like SHMTRACE_CALL_*) and
 *    publishes them once:
 *        COUNT <pid> <tid> <calls x SHMTRACE_FUNCTIONS> <enters x SHMTRACE_FUNCTIONS>
 *    plus free lines `NOTE <pid> <text>`. run.py compares the shim's log with these counts,
 *    per process and thread, exactly.
 *
 * 3. SysV cleanup: every segment / set is created with mode HZ_MODE (0610) and a key of
 *    this run's own, IPC_CREAT|IPC_EXCL: the top byte is $HOSTILE_TAG (run.py picks one per
 *    invocation), so run.py tells this run's objects from anyone else's in /proc/sysvipc,
 *    even while other suites run. Each is remembered until removed; what is left is removed
 *    with raw system calls at exit and on fatal signals (never traced), by the process that
 *    made it. run.py removes whatever a killed process left, and fails the run.
 *
 * 4. The ledger against the kernel: hz_disagreement() compares, page by page, the shim's view
 *    (shmtrace_mapping_at) with /proc/self/maps through c_tests/mapview.h, as ledger.h does.
 */
#ifndef HOSTILE_H
#define HOSTILE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmtrace.h> /* types and constants only: the functions are found with dlsym */

#include "../mapview.h"

#define HZ_MODE 0610
#define NFN SHMTRACE_FUNCTIONS

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

/* Indexed by the header's SHMTRACE_CALL_*, for messages. */
static const char *const hz_fn_names[NFN] = {
    [SHMTRACE_CALL_SHMGET] = "shmget",         [SHMTRACE_CALL_SHMAT] = "shmat",
    [SHMTRACE_CALL_SHMDT] = "shmdt",           [SHMTRACE_CALL_SHMCTL] = "shmctl",
    [SHMTRACE_CALL_SEMGET] = "semget",         [SHMTRACE_CALL_SEMOP] = "semop",
    [SHMTRACE_CALL_SEMTIMEDOP] = "semtimedop", [SHMTRACE_CALL_SEMCTL] = "semctl",
    [SHMTRACE_CALL_MMAP] = "mmap",             [SHMTRACE_CALL_MMAP64] = "mmap64",
    [SHMTRACE_CALL_MUNMAP] = "munmap",         [SHMTRACE_CALL_MREMAP] = "mremap"};

static long hz_pg; /* page size */
#define PG(n) ((size_t)(n) * (size_t)hz_pg)

/* ---- failures ----------------------------------------------------------------------- */

static const char *hz_prog = "hostile";
static atomic_int hz_failures;
static atomic_int hz_exiting; /* the SysV cleanup ran: a thread still creating removes at once */

static void hz_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static void hz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hz_fail(const char *file, int line, const char *fmt, ...)
{
    char buf[1024];
    int n;
    va_list ap;
    int saved = errno;
    n = snprintf(buf, sizeof buf, "FAIL %s[%d]: %s:%d: ", hz_prog, (int)getpid(), file, line);
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    hz_write_all(1, buf, (size_t)n);
    atomic_fetch_add(&hz_failures, 1);
    errno = saved;
}

#define FAIL(...) hz_fail(__FILE__, __LINE__, __VA_ARGS__)
#define EXPECT(cond, ...)      \
    do {                       \
        if (!(cond))           \
            FAIL(__VA_ARGS__); \
    } while (0)
#define EXPECT_EQ(what, got, want)                                                         \
    do {                                                                                   \
        long long g_ = (long long)(got), w_ = (long long)(want);                           \
        EXPECT(g_ == w_, "%s: %lld, expected %lld", (what), g_, w_);                       \
    } while (0)
/* A step nothing can go on without: FAIL, then exit (atexit cleanup runs). */
#define MUST(cond)                                                                         \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            FAIL("%s (errno %s)", #cond, hz_errname(errno));                               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static inline const char *hz_errname(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "E?";
}

/* printf to stdout in one write. */
static void hz_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void hz_say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    hz_write_all(1, buf, (size_t)n);
}

/* ---- time --------------------------------------------------------------------------- */

static inline double hz_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift, per thread */
static inline uint64_t hz_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ---- the C API, found at run time -------------------------------------------------- */

static struct {
    int present;
    shmtrace_result (*get_stats)(shmtrace_stats *);
    shmtrace_result (*mapping_at)(const void *, shmtrace_mapping *);
    int64_t (*attachments_of)(int);
    int64_t (*leak_count)(void);
} hz_api;

/* Whether the shim is in this process (preloaded or linked). */
static inline int hz_api_load(void)
{
    hz_api.get_stats = (shmtrace_result(*)(shmtrace_stats *))dlsym(RTLD_DEFAULT,
                                                                    "shmtrace_get_stats");
    hz_api.mapping_at = (shmtrace_result(*)(const void *, shmtrace_mapping *))dlsym(
        RTLD_DEFAULT, "shmtrace_mapping_at");
    hz_api.attachments_of = (int64_t(*)(int))dlsym(RTLD_DEFAULT, "shmtrace_attachments_of");
    hz_api.leak_count = (int64_t(*)(void))dlsym(RTLD_DEFAULT, "shmtrace_leak_count");
    hz_api.present = hz_api.get_stats && hz_api.mapping_at && hz_api.attachments_of &&
                     hz_api.leak_count;
    return hz_api.present;
}

static inline shmtrace_stats hz_stats(void)
{
    shmtrace_stats s;
    memset(&s, 0, sizeof s);
    if (hz_api.present)
        MUST(hz_api.get_stats(&s) == SHMTRACE_OK);
    return s;
}

/* ---- per-thread call counts and the journal -------------------------------------------- */

static __thread unsigned long hz_calls[NFN], hz_enters[NFN];
static int hz_journal_fd = -1;

/* A call the thread makes itself: counted once it returned. */
#define COUNTED(fn, expr)                 \
    ({                                    \
        __typeof__(expr) r_ = (expr);     \
        hz_calls[SHMTRACE_CALL_##fn]++;   \
        r_;                               \
    })
/* semop / semtimedop: the shim also writes an enter record. */
#define COUNTED_BLOCKING(fn, expr)        \
    ({                                    \
        hz_enters[SHMTRACE_CALL_##fn]++;  \
        COUNTED(fn, expr);                \
    })

/* Retries a counted call interrupted by a signal (every attempt is a call the log shows). A
 * blocked semop in a thread can see EINTR without any handler: a SIGCHLD queued while the
 * thread that posix_spawn()s has all signals blocked is delivered to another thread, and the
 * kernel's semtimedop returns -EINTR whenever a signal is pending. */
#define NO_EINTR(call)                                        \
    ({                                                        \
        __typeof__(call) rr_;                                 \
        do                                                    \
            rr_ = (call);                                     \
        while (rr_ == -1 && errno == EINTR);                  \
        rr_;                                                  \
    })

static inline void hz_journal_line(const char *line)
{
    if (hz_journal_fd >= 0)
        hz_write_all(hz_journal_fd, line, strlen(line));
}

static inline void hz_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void hz_note(const char *fmt, ...)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "NOTE %d ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 2, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    buf[n] = '\0';
    hz_journal_line(buf);
}

/* Publishes given counts as those of thread `tid` of process `pid`. */
static inline void hz_publish_counts(int pid, int tid, const unsigned long *calls,
                                     const unsigned long *enters)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "COUNT %d %d", pid, tid);
    for (int i = 0; i < NFN; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %lu", calls[i]);
    for (int i = 0; i < NFN; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, " %lu", enters[i]);
    snprintf(line + n, sizeof line - (size_t)n, "\n");
    hz_journal_line(line);
}

/* What every thread of this process published so far, summed (for checks against
 * shmtrace_stats.calls). */
static atomic_ulong hz_total_calls[NFN];

/* This thread's own counts, once (when it is done calling hooks). */
static inline void hz_publish(void)
{
    hz_publish_counts((int)getpid(), (int)gettid(), hz_calls, hz_enters);
    for (int i = 0; i < NFN; i++)
        atomic_fetch_add(&hz_total_calls[i], hz_calls[i]);
}

/* In a forked child: forget the counts and failures inherited from the parent. */
static inline void hz_forget_parent_counts(void)
{
    atomic_store(&hz_failures, 0);
    atomic_store(&hz_exiting, 0);
    memset(hz_calls, 0, sizeof hz_calls);
    memset(hz_enters, 0, sizeof hz_enters);
    for (int i = 0; i < NFN; i++)
        atomic_store(&hz_total_calls[i], 0);
}

/* ---- SysV objects: creation with the mark, and cleanup whatever happens ---------------- */

#define HZ_MAX_OBJS 1024
static struct {
    atomic_int used; /* 0 free, 1 claimed, 2 valid */
    int is_sem, id;
    pid_t owner;
} hz_objs[HZ_MAX_OBJS];

static void hz_track(int is_sem, int id)
{
    if (atomic_load(&hz_exiting)) {
        if (is_sem)
            syscall(SYS_semctl, id, 0, IPC_RMID, 0);
        else
            syscall(SYS_shmctl, id, IPC_RMID, NULL);
        return;
    }
    for (int i = 0; i < HZ_MAX_OBJS; i++) {
        int free_ = 0;
        if (atomic_compare_exchange_strong(&hz_objs[i].used, &free_, 1)) {
            hz_objs[i].is_sem = is_sem;
            hz_objs[i].id = id;
            hz_objs[i].owner = getpid();
            atomic_store(&hz_objs[i].used, 2);
            return;
        }
    }
    /* No slot: remove it now rather than risk leaving it behind. */
    if (is_sem)
        syscall(SYS_semctl, id, 0, IPC_RMID, 0);
    else
        syscall(SYS_shmctl, id, IPC_RMID, NULL);
    FAIL("more than %d SysV objects alive at once", HZ_MAX_OBJS);
    exit(1);
}

static void hz_untrack(int is_sem, int id)
{
    for (int i = 0; i < HZ_MAX_OBJS; i++)
        if (atomic_load(&hz_objs[i].used) == 2 && hz_objs[i].is_sem == is_sem &&
            hz_objs[i].id == id && hz_objs[i].owner == getpid()) {
            atomic_store(&hz_objs[i].used, 0);
            return;
        }
}

/* Raw system calls: never traced. Async-signal-safe. */
static void hz_cleanup(void)
{
    pid_t me = getpid();
    atomic_store(&hz_exiting, 1);
    for (int i = 0; i < HZ_MAX_OBJS; i++) {
        if (atomic_load(&hz_objs[i].used) != 2 || hz_objs[i].owner != me)
            continue;
        if (hz_objs[i].is_sem)
            syscall(SYS_semctl, hz_objs[i].id, 0, IPC_RMID, 0);
        else
            syscall(SYS_shmctl, hz_objs[i].id, IPC_RMID, NULL);
        atomic_store(&hz_objs[i].used, 0);
    }
}

static void hz_fatal_signal(int sig)
{
    hz_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int hz_tag = 0x7e;      /* $HOSTILE_TAG: the top byte of every key */
static atomic_uint hz_key_seq; /* the low byte */

/* A key of this run, not used by a live object of this process if possible. */
static inline key_t hz_key(void)
{
    unsigned seq = atomic_fetch_add(&hz_key_seq, 1);
    return (key_t)((unsigned)hz_tag << 24 | ((unsigned)getpid() & 0xffff) << 8 | (seq & 0xff));
}

/* The counted SysV calls of the tests: create (marked, tracked), remove (untracked). A key
 * taken (EEXIST: another live object of ours, or a pid reused) is a call too: next key. */
static inline int hz_shmget(size_t size)
{
    int id, tries = 0;
    do
        id = COUNTED(SHMGET, shmget(hz_key(), size, IPC_CREAT | IPC_EXCL | HZ_MODE));
    while (id < 0 && errno == EEXIST && ++tries < 512);
    if (id >= 0)
        hz_track(0, id);
    return id;
}

static inline int hz_semget(int nsems)
{
    int id, tries = 0;
    do
        id = COUNTED(SEMGET, semget(hz_key(), nsems, IPC_CREAT | IPC_EXCL | HZ_MODE));
    while (id < 0 && errno == EEXIST && ++tries < 512);
    if (id >= 0)
        hz_track(1, id);
    return id;
}

static inline int hz_rm_shm(int id)
{
    int r = COUNTED(SHMCTL, shmctl(id, IPC_RMID, NULL));
    if (r == 0)
        hz_untrack(0, id);
    return r;
}

static inline int hz_rm_sem(int id)
{
    int r = COUNTED(SEMCTL, semctl(id, 0, IPC_RMID));
    if (r == 0)
        hz_untrack(1, id);
    return r;
}

/* ---- set-up ----------------------------------------------------------------------------- */

/* Call first in main. */
static inline void hz_init(const char *prog)
{
    static const int fatal[] = {SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGABRT, SIGBUS,
                                SIGFPE, SIGSEGV, SIGPIPE, SIGALRM, SIGTERM};
    const char *path = getenv("HOSTILE_JOURNAL"), *tag = getenv("HOSTILE_TAG");
    hz_prog = prog;
    if (tag && atoi(tag) > 0 && atoi(tag) < 0x80)
        hz_tag = atoi(tag);
    hz_pg = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (path && *path) {
        hz_journal_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        MUST(hz_journal_fd >= 0);
    }
    atexit(hz_cleanup);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        signal(fatal[i], hz_fatal_signal);
}

/* Exit status of main: 1 if anything failed. */
static inline int hz_status(void)
{
    return atomic_load(&hz_failures) ? 1 : 0;
}

/* ---- the ledger against /proc/self/maps (mapview.h) -------------------------------- */

static inline int hz_slurp(const char *path, char *buf, size_t size)
{
    return mapview_slurp(path, buf, size);
}

static inline void hz_kernel_load(void)
{
    MUST(mapview_load() == 0);
}

static inline struct mapview hz_ledger_at(uintptr_t a)
{
    shmtrace_result r;
    struct mapview v = mapview_ledger_at(hz_api.mapping_at, a, &r);
    MUST(r == SHMTRACE_OK || r == SHMTRACE_NOT_FOUND);
    return v;
}

/* See mapview_disagreement (as of the last hz_kernel_load). */
static inline const char *hz_disagreement_loaded(const void *start, size_t len, int inherited)
{
    return mapview_disagreement(hz_api.mapping_at, start, len, inherited);
}

static inline const char *hz_disagreement(const void *start, size_t len, int inherited)
{
    hz_kernel_load();
    return hz_disagreement_loaded(start, len, inherited);
}

/* The ledger knows exactly [start, start + len) as one mapping of `kind` (and `shmid`). */
static inline const char *hz_exact_mapping(const void *start, size_t len, int kind, int shmid)
{
    static char msg[256];
    shmtrace_mapping m;
    shmtrace_result r = hz_api.mapping_at(start, &m);
    if (r != SHMTRACE_OK) {
        snprintf(msg, sizeof msg, "shmtrace_mapping_at(%p) = %d (not found)", start, (int)r);
        return msg;
    }
    if (m.start != (uintptr_t)start || m.end != (uintptr_t)start + len || m.kind != kind ||
        (kind == SHMTRACE_MAPPING_SHM && m.shmid != shmid)) {
        snprintf(msg, sizeof msg,
                 "shmtrace_mapping_at(%p): [%#lx-%#lx) kind %d shmid %d, expected "
                 "[%p-%#lx) kind %d shmid %d",
                 start, (unsigned long)m.start, (unsigned long)m.end, m.kind, m.shmid, start,
                 (unsigned long)start + len, kind, shmid);
        return msg;
    }
    return NULL;
}

/* Waits for `pid` until `deadline` (hz_now()); returns its wait status, or -1 if it did not
 * end (then it says so on stdout, `HUNG <pid>`, and leaves it running for run.py to
 * inspect). */
static inline int hz_wait_child_until(pid_t pid, double deadline)
{
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR) {
            FAIL("waitpid(%d): %s", (int)pid, hz_errname(errno));
            return -1;
        }
        if (hz_now() > deadline) {
            hz_say("HUNG %d\n", (int)pid);
            FAIL("child %d did not finish in time (deadlock?)", (int)pid);
            return -1;
        }
        usleep(2000);
    }
}

static inline int hz_wait_child(pid_t pid, double seconds)
{
    return hz_wait_child_until(pid, hz_now() + seconds);
}

#endif
