/*
 * edge.h - helpers shared by the c_tests/edge programs (include after ../harness.h).
 *
 * Outcome lines: every call under test prints one line that says what it returned and what
 * errno it left, in a form that is the same in every run of the same program natively, linked
 * with -lshmtrace and under LD_PRELOAD (ids and addresses are never printed, only their class):
 *
 *     label: ret=-1 errno=EFAULT
 *     label: ret=0 errno=unchanged         (errno was set to a sentinel before the call)
 *     label: ret=>0 errno=unchanged
 *     label: ret=id errno=unchanged        (shmget/semget: any id, 0 included)
 *     label: ret=ptr errno=unchanged       (a pointer result that is not the failure value)
 *     label: ret=MAP_FAILED errno=EINVAL
 *
 * run.py compares these lines between the three runs: any difference in result or errno is a
 * failure of the shim's transparency.
 */
#ifndef EDGE_H
#define EDGE_H

#include <stdarg.h>
#include <sys/auxv.h>
#include <time.h>

/* An errno value no call sets: errno is set to it before each call under test, so a success
 * that touched errno shows up. */
#define E_SENTINEL 4093

static inline const char *e_errname(int err)
{
    static char buf[32];
    if (err == E_SENTINEL)
        return "unchanged";
    const char *name = strerrorname_np(err);
    if (name)
        return name;
    snprintf(buf, sizeof buf, "E%d", err);
    return buf;
}

static inline void show_int(const char *label, long ret, int err)
{
    if (ret > 0)
        printf("%s: ret=>0 errno=%s\n", label, e_errname(err));
    else
        printf("%s: ret=%ld errno=%s\n", label, ret, e_errname(err));
}

/* For ids (shmget, semget): any id is as good as another, 0 included. */
static inline void show_id(const char *label, long ret, int err)
{
    if (ret >= 0)
        printf("%s: ret=id errno=%s\n", label, e_errname(err));
    else
        show_int(label, ret, err);
}

static inline void show_ptr(const char *label, void *ret, int err)
{
    printf("%s: ret=%s errno=%s\n", label,
           ret == MAP_FAILED ? "MAP_FAILED" : ret == NULL ? "NULL" : "ptr", e_errname(err));
}

/* T_INT("label", fn, args...): errno := sentinel, call through the harness (journaled), print
 * the outcome; evaluates to the result. */
#define T_INT(label, fn, ...)                                  \
    ({                                                         \
        errno = E_SENTINEL;                                    \
        long t_r_ = CALL_INT(label, fn, __VA_ARGS__);          \
        show_int(label, t_r_, errno);                          \
        t_r_;                                                  \
    })
#define T_ID(label, fn, ...)                                   \
    ({                                                         \
        errno = E_SENTINEL;                                    \
        long t_r_ = CALL_INT(label, fn, __VA_ARGS__);          \
        show_id(label, t_r_, errno);                           \
        t_r_;                                                  \
    })
#define T_BLOCKING(label, fn, ...)                             \
    ({                                                         \
        errno = E_SENTINEL;                                    \
        long t_r_ = CALL_BLOCKING(label, fn, __VA_ARGS__);     \
        show_int(label, t_r_, errno);                          \
        t_r_;                                                  \
    })
#define T_PTR(label, fn, ...)                                  \
    ({                                                         \
        errno = E_SENTINEL;                                    \
        void *t_r_ = CALL_PTR(label, fn, __VA_ARGS__);         \
        show_ptr(label, t_r_, errno);                          \
        t_r_;                                                  \
    })

/* Set-up and clean-up that must not appear in the log: raw system calls. */
static inline void *raw_mmap(void *addr, size_t len, int prot, int flags)
{
    long r = syscall(SYS_mmap, addr, len, prot, flags, -1, 0);
    CHECK(r != -1);
    return (void *)r;
}

static inline void raw_munmap(void *addr, size_t len)
{
    CHECK(syscall(SYS_munmap, addr, len) == 0);
}

static inline void raw_rm_shm(int id)
{
    syscall(SYS_shmctl, id, IPC_RMID, NULL);
    untrack(0, id);
}

static inline void raw_rm_sem(int id)
{
    syscall(SYS_semctl, id, 0, IPC_RMID, 0);
    untrack(1, id);
}

static inline void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
