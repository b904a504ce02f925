/*
 * liblate.so: late_calls (late.h), and the late callers that live in a library:
 *
 *  - its constructor registers two exit handlers before anything else in the process does
 *    (the loader initializes liblate before the shim and before the program, so before libc
 *    registers the loader's destructor-runner _dl_fini): one with atexit, tied to this
 *    library (it runs when the library's destructors run, after the shim's), one with
 *    __cxa_atexit(.., NULL) (it runs from exit() after _dl_fini, i.e. after every
 *    library destructor, the shim's included: the shim's teardown is long over);
 *  - its destructor (it runs after the shim's: liblate was initialized first).
 *
 * It does not include harness.h (that would give the library a second harness constructor):
 * outcome lines are written here, and every object it creates it removes, by raw system call
 * if the hooked call failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "late.h"

#define SENTINEL 4093

int __cxa_atexit(void (*func)(void *), void *arg, void *dso_handle);

static void say(const char *who, const char *what, long ret, int err)
{
    char line[256], e[40];
    const char *name = err == SENTINEL ? "unchanged" : strerrorname_np(err);
    if (!name) {
        snprintf(e, sizeof e, "E%d", err);
        name = e;
    }
    int n;
    if (ret > 0)
        n = snprintf(line, sizeof line, "%s: %s: ret=>0 errno=%s\n", who, what, name);
    else
        n = snprintf(line, sizeof line, "%s: %s: ret=%ld errno=%s\n", who, what, ret, name);
    if (write(1, line, n) != n)
        _exit(98);
}

#define INT(what, call)                      \
    ({                                       \
        errno = SENTINEL;                    \
        long r_ = (call);                    \
        say(who, what, r_, errno);           \
        r_;                                  \
    })
#define ID(what, call)                       \
    ({                                       \
        errno = SENTINEL;                    \
        long r_ = (call);                    \
        say(who, what, r_ >= 0 ? 1 : r_, errno); \
        r_;                                  \
    })
#define PTR(what, call)                                                \
    ({                                                                 \
        errno = SENTINEL;                                              \
        void *r_ = (call);                                             \
        say(who, what, r_ == MAP_FAILED ? -1 : 1, errno);              \
        r_;                                                            \
    })

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

void late_calls(const char *who, int k)
{
    const size_t len = 4096UL * (16 + k);
    const int rw = PROT_READ | PROT_WRITE, pa = MAP_PRIVATE | MAP_ANONYMOUS;

    char *p = PTR("mmap", mmap(NULL, len, rw, pa, -1, 0));
    if (p != MAP_FAILED) {
        p[len - 1] = 1;
        char *q = PTR("mremap", mremap(p, len, 2 * len, MREMAP_MAYMOVE));
        if (q != MAP_FAILED)
            p = q;
        INT("munmap", munmap(p, q != MAP_FAILED ? 2 * len : len));
    }
    p = PTR("mmap64", mmap64(NULL, 4096, rw, pa, -1, 0));
    if (p != MAP_FAILED)
        INT("munmap64", munmap(p, 4096));
    INT("munmap misaligned", munmap(p + 1, 4096));
    PTR("mmap len 0", mmap(NULL, 0, rw, pa, -1, 0));

    int shm = ID("shmget", shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600));
    if (shm >= 0) {
        void *a = PTR("shmat", shmat(shm, NULL, 0));
        struct shmid_ds ds;
        INT("shmctl IPC_STAT", shmctl(shm, IPC_STAT, &ds));
        if (a != (void *)-1)
            INT("shmdt", shmdt(a));
        if (INT("shmctl IPC_RMID", shmctl(shm, IPC_RMID, NULL)) != 0)
            syscall(SYS_shmctl, shm, IPC_RMID, NULL);
    }
    INT("shmctl bad id", shmctl(-1, IPC_STAT, NULL));

    int sem = ID("semget", semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    if (sem >= 0) {
        INT("semctl SETVAL", semctl(sem, 0, SETVAL, (union semun){.val = 1}));
        struct sembuf take = {0, -1, 0};
        INT("semop", semop(sem, &take, 1));
        struct timespec ts = {0, 1000000};
        INT("semtimedop", semtimedop(sem, &take, 1, &ts));
        INT("semctl GETVAL", semctl(sem, 0, GETVAL));
        if (INT("semctl IPC_RMID", semctl(sem, 0, IPC_RMID)) != 0)
            syscall(SYS_semctl, sem, 0, IPC_RMID, 0);
    }
    INT("semop bad id", semop(-1, NULL, 1));
}

static int exit_status = -1;

void late_exit_with(int status)
{
    exit_status = status;
}

static void dso_atexit(void)
{
    late_calls("liblate atexit", 6);
}

static void global_atexit(void *arg)
{
    (void)arg;
    late_calls("liblate global atexit", 7);
    if (exit_status >= 0)
        _exit(exit_status);
}

__attribute__((constructor)) static void late_init(void)
{
    if (atexit(dso_atexit) != 0 || __cxa_atexit(global_atexit, NULL, NULL) != 0)
        _exit(97);
}

__attribute__((destructor)) static void late_fini(void)
{
    late_calls("liblate destructor", 5);
}
