/*
 * harness.h - helpers shared by the shmtrace C scenarios. Include it first.
 *
 * Three jobs:
 *
 * 1. Journal. Every hooked call goes through a CALL_* macro, which performs the call and then
 *    appends one line to the file named by $SHMTRACE_TEST_JOURNAL (if set), written with one
 *    write(2) so threads and forked children never interleave:
 *
 *        C <pid> <tid> <fn> <ret> <errno> <tag> <lo> <hi>   a call returned
 *        E <pid> <tid> <fn> - - <tag> <lo> <hi>             about to call semop/semtimedop
 *        V <pid> <name> <value>                             a value run.py needs to check a log
 *
 *    <ret> is decimal for int functions and 0x-hex for pointer functions; <errno> is the errno
 *    name on failure, else "-"; <tag> names a call run.py checks in detail ("-" when none);
 *    [<lo>, <hi>) is the code range of the module making the call (the expected `caller`).
 *    run.py matches the shim's log against this journal record by record.
 *
 * 2. Cleanup. Every segment / semaphore set created through CALL_INT is remembered until it is
 *    removed with rmid_shm / rmid_sem; anything left is removed at exit and on fatal signals,
 *    with raw syscalls (so cleanup never shows up in the log). A forked child never removes
 *    its parent's objects.
 *
 * 3. Deterministic stdout: expect_ok / expect_fail / expect_eq print "label: ok",
 *    "label: fail EEXIST", "label: 42" and exit(1) when the outcome is not the expected one.
 *    Stdout must be identical with and without the shim.
 */
#ifndef HARNESS_H
#define HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(_FILE_OFFSET_BITS) && _FILE_OFFSET_BITS == 64
#define H_MMAP_SYMBOL "mmap64" /* <sys/mman.h> redirects mmap to mmap64 */
#else
#define H_MMAP_SYMBOL "mmap"
#endif

/* semctl's optional fourth argument; the caller must define it (see semctl(2)). */
union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s (errno %s)\n", __FILE__, __LINE__, \
                    #cond, h_errname(errno));                                            \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static inline const char *h_errname(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "E?";
}

/* ---- journal ---------------------------------------------------------------------- */

static int h_journal_fd = -1;
static uintptr_t h_code_lo, h_code_hi; /* this module's executable segment */

static void h_journal_write(const char *line)
{
    if (h_journal_fd >= 0 && write(h_journal_fd, line, strlen(line)) < 0)
        _exit(99);
}

static void h_journal_call(char kind, const char *tag, const char *fn, const char *ret,
                           int failed, int err)
{
    char line[256];
    int saved = errno;
    if (strcmp(fn, "mmap") == 0)
        fn = H_MMAP_SYMBOL;
    snprintf(line, sizeof line, "%c %d %d %s %s %s %s 0x%lx 0x%lx\n", kind, (int)getpid(),
             (int)gettid(), fn, ret, failed ? h_errname(err) : "-", tag ? tag : "-",
             (unsigned long)h_code_lo, (unsigned long)h_code_hi);
    h_journal_write(line);
    errno = saved;
}

/* Record a value (a key, an address) that the log must show. */
static inline void journal_value(const char *name, unsigned long value)
{
    char line[128];
    int saved = errno;
    snprintf(line, sizeof line, "V %d %s 0x%lx\n", (int)getpid(), name, value);
    h_journal_write(line);
    errno = saved;
}

static void h_track(int is_sem, int id);

static inline int h_note_int(const char *tag, const char *fn, int ret, int err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d", ret);
    if (ret >= 0 && (strcmp(fn, "shmget") == 0 || strcmp(fn, "semget") == 0))
        h_track(fn[1] == 'e', ret);
    h_journal_call('C', tag, fn, buf, ret == -1, err);
    errno = err;
    return ret;
}

static inline void *h_note_ptr(const char *tag, const char *fn, void *ret, int err)
{
    char buf[32];
    snprintf(buf, sizeof buf, "0x%lx", (unsigned long)ret);
    /* sem_open fails with SEM_FAILED (NULL), the others with (void *) -1. */
    int failed = strcmp(fn, "sem_open") == 0 ? ret == NULL : ret == (void *)-1;
    h_journal_call('C', tag, fn, buf, failed, err);
    errno = err;
    return ret;
}

static inline void h_note_enter(const char *tag, const char *fn)
{
    h_journal_call('E', tag, fn, "-", 0, 0);
}

/* CALL_INT("tag", shmget, key, size, flags): call, journal, return the result (errno kept). */
#define CALL_INT_AS(tag, name, fn, ...) \
    ({ int r_ = (fn)(__VA_ARGS__); h_note_int((tag), (name), r_, errno); })
#define CALL_PTR_AS(tag, name, fn, ...) \
    ({ void *r_ = (fn)(__VA_ARGS__); h_note_ptr((tag), (name), r_, errno); })
/* For semop/semtimedop: the shim writes an "enter" record when the call waits (the journal
 * has one before every such call; the runner compares only a thread's last one, the call in
 * progress where a scenario is killed). */
#define CALL_BLOCKING_AS(tag, name, fn, ...) \
    ({ h_note_enter((tag), (name)); CALL_INT_AS(tag, name, fn, __VA_ARGS__); })

#define CALL_INT(tag, fn, ...) CALL_INT_AS(tag, #fn, fn, __VA_ARGS__)
#define CALL_PTR(tag, fn, ...) CALL_PTR_AS(tag, #fn, fn, __VA_ARGS__)
#define CALL_BLOCKING(tag, fn, ...) CALL_BLOCKING_AS(tag, #fn, fn, __VA_ARGS__)

/* ---- SysV cleanup ----------------------------------------------------------------- */

#define H_MAX_OBJS 64
static struct { int used, is_sem, id; pid_t owner; } h_objs[H_MAX_OBJS];
static pthread_mutex_t h_objs_lock = PTHREAD_MUTEX_INITIALIZER;

static void h_track_locked(int is_sem, int id)
{
    for (int i = 0; i < H_MAX_OBJS; i++)
        if (h_objs[i].used && h_objs[i].is_sem == is_sem && h_objs[i].id == id)
            return;
    for (int i = 0; i < H_MAX_OBJS; i++) {
        if (!h_objs[i].used) {
            h_objs[i].is_sem = is_sem;
            h_objs[i].id = id;
            h_objs[i].owner = getpid();
            h_objs[i].used = 1;
            return;
        }
    }
    fprintf(stderr, "harness: too many SysV objects\n");
    exit(1);
}

static void h_track(int is_sem, int id)
{
    pthread_mutex_lock(&h_objs_lock);
    h_track_locked(is_sem, id);
    pthread_mutex_unlock(&h_objs_lock);
}

static inline void untrack(int is_sem, int id)
{
    pthread_mutex_lock(&h_objs_lock);
    for (int i = 0; i < H_MAX_OBJS; i++)
        if (h_objs[i].used && h_objs[i].is_sem == is_sem && h_objs[i].id == id)
            h_objs[i].used = 0;
    pthread_mutex_unlock(&h_objs_lock);
}

/* Async-signal-safe (no lock: it runs at exit or on a fatal signal); raw syscalls so that
 * the cleanup is never traced. */
static void h_cleanup(void)
{
    pid_t me = getpid();
    for (int i = 0; i < H_MAX_OBJS; i++) {
        if (!h_objs[i].used || h_objs[i].owner != me)
            continue;
        if (h_objs[i].is_sem)
            syscall(SYS_semctl, h_objs[i].id, 0, IPC_RMID, 0);
        else
            syscall(SYS_shmctl, h_objs[i].id, IPC_RMID, NULL);
        h_objs[i].used = 0;
    }
}

static void h_fatal_signal(int sig)
{
    h_cleanup();
    signal(sig, SIG_DFL);
    raise(sig); /* delivered with the default action once the handler returns */
}

/* Remove a segment / semaphore set (traced) and forget it. */
static inline int rmid_shm(const char *tag, int id)
{
    int r = CALL_INT(tag, shmctl, id, IPC_RMID, NULL);
    if (r == 0)
        untrack(0, id);
    return r;
}

static inline int rmid_sem(const char *tag, int id)
{
    int r = CALL_INT(tag, semctl, id, 0, IPC_RMID);
    if (r == 0)
        untrack(1, id);
    return r;
}

/* ---- set-up ----------------------------------------------------------------------- */

static int h_find_code(struct dl_phdr_info *info, size_t size, void *data)
{
    uintptr_t me = (uintptr_t)data;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo && me < hi) {
            h_code_lo = lo;
            h_code_hi = hi;
            return 1;
        }
    }
    return 0;
}

__attribute__((constructor(101))) static void h_init(void)
{
    static const int fatal[] = {SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGABRT, SIGBUS,
                                SIGFPE, SIGSEGV, SIGPIPE, SIGALRM, SIGTERM};
    const char *path = getenv("SHMTRACE_TEST_JOURNAL");

    setvbuf(stdout, NULL, _IONBF, 0); /* output survives fork and _exit in order */
    dl_iterate_phdr(h_find_code, (void *)(uintptr_t)h_find_code);
    if (path && *path) {
        h_journal_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (h_journal_fd < 0) {
            perror(path);
            exit(1);
        }
    }
    atexit(h_cleanup);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        signal(fatal[i], h_fatal_signal);
    alarm(20); /* a hung scenario dies (and cleans up) well before run.py gives up */
}

/* ---- deterministic stdout --------------------------------------------------------- */

/* The call succeeded: prints "label: ok". */
static inline void expect_ok(const char *label, int succeeded)
{
    int err = errno;
    if (succeeded) {
        printf("%s: ok\n", label);
        return;
    }
    printf("%s: fail %s\n", label, h_errname(err));
    fprintf(stderr, "%s: expected success, got %s\n", label, h_errname(err));
    exit(1);
}

/* The call failed with want_errno: prints "label: fail ENAME". */
static inline void expect_fail(const char *label, int failed, int want_errno)
{
    int err = errno;
    if (!failed) {
        printf("%s: unexpected success\n", label);
        fprintf(stderr, "%s: expected %s, got success\n", label, h_errname(want_errno));
        exit(1);
    }
    printf("%s: fail %s\n", label, h_errname(err));
    if (err != want_errno) {
        fprintf(stderr, "%s: expected %s, got %s\n", label, h_errname(want_errno),
                h_errname(err));
        exit(1);
    }
}

static inline void expect_eq(const char *label, long got, long want)
{
    printf("%s: %ld\n", label, got);
    if (got != want) {
        fprintf(stderr, "%s: expected %ld, got %ld\n", label, want, got);
        exit(1);
    }
}

/* A SysV key unlikely to collide with anything else on the machine. */
static inline key_t test_key(int n)
{
    return (key_t)(0x53540000 + ((getpid() & 0xfff) << 4) + n);
}

#endif
