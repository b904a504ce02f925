/*
 * findings.h - helpers for the audit-finding programs (c_tests/findings). Each NAME.c is built
 * twice: NAME.bad triggers its finding, NAME.fixed (-DFIXED) is the corrected code.
 *
 * Every SysV object a program creates goes through track_shm / track_sem and is removed at
 * exit (also after a failed check, and on SIGINT/SIGTERM) with raw syscalls, so the cleanup
 * never appears in the log nor causes findings of its own. Only the creating process removes.
 * check() prints "FAIL ..." and exits 1 when the native behaviour is not what C promises.
 */
#ifndef FINDINGS_H
#define FINDINGS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

#define MAX_TRACKED 16
static int tracked_shm[MAX_TRACKED], tracked_sem[MAX_TRACKED];
static int n_shm, n_sem;
static pid_t tracking_pid;
/* A POSIX shared memory name (/dev/shm/...) this program creates, "" when none; and a named
 * semaphore's (/dev/shm/sem....). */
static char tracked_name[64], tracked_sem_name_[64];

static inline void remove_tracked(void)
{
    if (getpid() != tracking_pid)
        return;
    for (int i = 0; i < n_shm; i++)
        syscall(SYS_shmctl, tracked_shm[i], IPC_RMID, 0);
    for (int i = 0; i < n_sem; i++)
        syscall(SYS_semctl, tracked_sem[i], 0, IPC_RMID, 0);
    n_shm = n_sem = 0;
    if (tracked_name[0]) {
        /* The raw system call: clean-up must not appear in the log. */
        char path[80];
        snprintf(path, sizeof path, "/dev/shm%s", tracked_name);
        syscall(SYS_unlink, path);
        tracked_name[0] = 0;
    }
    if (tracked_sem_name_[0]) {
        char path[80];
        snprintf(path, sizeof path, "/dev/shm/sem.%s", tracked_sem_name_ + 1);
        syscall(SYS_unlink, path);
        tracked_sem_name_[0] = 0;
    }
}

static inline void on_signal(int sig)
{
    remove_tracked();
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void start_tracking(void)
{
    tracking_pid = getpid();
    atexit(remove_tracked);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

static inline int track_shm(int id)
{
    if (id >= 0 && n_shm < MAX_TRACKED)
        tracked_shm[n_shm++] = id;
    return id;
}

/* A name unique to this process, removed on every way out. */
static inline const char *tracked_shm_name(void)
{
    snprintf(tracked_name, sizeof tracked_name, "/shmtrace-finding-%d", (int)getpid());
    return tracked_name;
}

/* A named semaphore's name this program creates (removed at exit if it is left). */
static inline const char *tracked_sem_name(void)
{
    snprintf(tracked_sem_name_, sizeof tracked_sem_name_, "/shmtrace-finding-sem-%d",
             (int)getpid());
    return tracked_sem_name_;
}

static inline int track_sem(int id)
{
    if (id >= 0 && n_sem < MAX_TRACKED)
        tracked_sem[n_sem++] = id;
    return id;
}

static inline void check(int ok, const char *what)
{
    if (!ok) {
        printf("FAIL %s (errno %d %s)\n", what, errno, strerror(errno));
        exit(1);
    }
}

/* A key no other test run uses: this process's pid and a salt. */
static inline key_t unique_key(int salt)
{
    return (key_t)(0x5d000000 | ((getpid() & 0xfffff) << 4) | (salt & 0xf));
}

static inline long page(void)
{
    return sysconf(_SC_PAGESIZE);
}

#endif
