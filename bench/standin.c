/* The C stand-in of `make bench`: what a careful C engineer would write in an afternoon to log
 * the same calls. Preloaded like the shim, it forwards each call to libc and logs one line per
 * call, formatted with snprintf into a stack buffer and written with one write(2) to an
 * O_APPEND file: the same shape as the shim's text record (pid, entry time, arguments, result,
 * errno, duration, caller), with flags as numbers instead of names, and no ledger.
 *
 *   STANDIN_LOG=PATH  the log file (a ".PID" is appended); without it nothing is logged
 *
 * It interposes the calls of bench/bench.c: mmap munmap mremap shmget shmat shmdt shmctl
 * semget semop semtimedop semctl shm_open shm_unlink. Real functions are resolved with
 * dlsym(RTLD_NEXT) in the constructor; the pid is cached (getpid is a system call). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static int pid;
static char log_base[4000];

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int (*real_shmget)(key_t, size_t, int);
static void *(*real_shmat)(int, const void *, int);
static int (*real_shmdt)(const void *);
static int (*real_shmctl)(int, int, struct shmid_ds *);
static int (*real_semget)(key_t, int, int);
static int (*real_semop)(int, struct sembuf *, size_t);
static int (*real_semtimedop)(int, struct sembuf *, size_t, const struct timespec *);
static int (*real_semctl)(int, int, int, ...);
static int (*real_shm_open)(const char *, int, mode_t);
static int (*real_shm_unlink)(const char *);

static void open_log(void)
{
    char path[4100];
    if (!log_base[0])
        return;
    snprintf(path, sizeof path, "%s.%d", log_base, pid);
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

static void in_child(void)
{
    pid = getpid();
    if (log_fd >= 0)
        close(log_fd);
    open_log();
}

#define RESOLVE(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void standin_init(void)
{
    RESOLVE(mmap);
    RESOLVE(munmap);
    RESOLVE(mremap);
    RESOLVE(shmget);
    RESOLVE(shmat);
    RESOLVE(shmdt);
    RESOLVE(shmctl);
    RESOLVE(semget);
    RESOLVE(semop);
    RESOLVE(semtimedop);
    RESOLVE(semctl);
    RESOLVE(shm_open);
    RESOLVE(shm_unlink);
    pid = getpid();
    const char *base = getenv("STANDIN_LOG");
    if (base && strlen(base) < sizeof log_base) {
        strcpy(log_base, base);
        open_log();
    }
    pthread_atfork(NULL, NULL, in_child);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One record: "standin[PID] SECONDS.MICROS FUNC(ARGS) = RESULT [ERRNO] <DURATION> caller=ADDR". */
static void emit(const char *fn, const char *args, long ret, int ptr, int err, uint64_t t0,
                 void *caller)
{
    if (log_fd < 0)
        return;
    uint64_t dur = now_ns() - t0;
    char line[1024];
    int n;
    if (ret == -1)
        n = snprintf(line, sizeof line, "standin[%d] %lu.%06lu %s(%s) = -1 %s <%lu.%06lu> caller=%p\n",
                     pid, (unsigned long)(t0 / 1000000000u), (unsigned long)(t0 % 1000000000u / 1000),
                     fn, args, strerrorname_np(err), (unsigned long)(dur / 1000000000u),
                     (unsigned long)((dur % 1000000000u + 500) / 1000), caller);
    else
        n = snprintf(line, sizeof line, ptr ? "standin[%d] %lu.%06lu %s(%s) = %#lx <%lu.%06lu> caller=%p\n"
                         : "standin[%d] %lu.%06lu %s(%s) = %ld <%lu.%06lu> caller=%p\n",
                     pid, (unsigned long)(t0 / 1000000000u), (unsigned long)(t0 % 1000000000u / 1000),
                     fn, args, ret, (unsigned long)(dur / 1000000000u),
                     (unsigned long)((dur % 1000000000u + 500) / 1000), caller);
    if (n > (int)sizeof line - 1)
        n = sizeof line - 1;
    if (write(log_fd, line, (size_t)n) < 0) {
        /* a log that cannot be written must not disturb the program */
    }
}

/* The operations as "[{num, op, flg}, ...]", the first 8. */
static int format_sops(char *out, size_t size, const struct sembuf *sops, size_t nsops)
{
    int n = snprintf(out, size, "[");
    for (size_t i = 0; i < nsops && i < 8 && n < (int)size; i++)
        n += snprintf(out + n, size - (size_t)n, "%s{%u, %d, %#x}", i ? ", " : "",
                      sops[i].sem_num, sops[i].sem_op, (unsigned)sops[i].sem_flg);
    if (n < (int)size)
        n += snprintf(out + n, size - (size_t)n, "]");
    return n;
}

#define CALL(expr)                                                                                 \
    int saved_errno_;                                                                              \
    uint64_t t0_ = now_ns();                                                                       \
    __typeof__(expr) r_ = (expr);                                                                  \
    saved_errno_ = errno

#define DONE(fn, ret, ptr)                                                                         \
    emit(fn, args, (long)(ret), ptr, saved_errno_, t0_, __builtin_return_address(0));              \
    errno = saved_errno_

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    CALL(real_mmap(addr, len, prot, flags, fd, off));
    char args[160];
    snprintf(args, sizeof args, "%p, %zu, %#x, %#x, %d, %#lx", addr, len, prot, flags, fd, (long)off);
    DONE("mmap", r_ == MAP_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int munmap(void *addr, size_t len)
{
    CALL(real_munmap(addr, len));
    char args[64];
    snprintf(args, sizeof args, "%p, %zu", addr, len);
    DONE("munmap", r_, 0);
    return r_;
}

void *mremap(void *old, size_t old_size, size_t new_size, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    void *new_addr = va_arg(ap, void *);
    va_end(ap);
    CALL(real_mremap(old, old_size, new_size, flags, new_addr));
    char args[128];
    snprintf(args, sizeof args, "%p, %zu, %zu, %#x", old, old_size, new_size, flags);
    DONE("mremap", r_ == MAP_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int shmget(key_t key, size_t size, int flg)
{
    CALL(real_shmget(key, size, flg));
    char args[96];
    snprintf(args, sizeof args, "%#x, %zu, %#o", (unsigned)key, size, (unsigned)flg);
    DONE("shmget", r_, 0);
    return r_;
}

void *shmat(int id, const void *addr, int flg)
{
    CALL(real_shmat(id, addr, flg));
    char args[96];
    snprintf(args, sizeof args, "%d, %p, %#x", id, addr, (unsigned)flg);
    DONE("shmat", r_ == (void *)-1 ? -1 : (long)r_, 1);
    return r_;
}

int shmdt(const void *addr)
{
    CALL(real_shmdt(addr));
    char args[32];
    snprintf(args, sizeof args, "%p", addr);
    DONE("shmdt", r_, 0);
    return r_;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
    CALL(real_shmctl(id, cmd, buf));
    char args[96];
    snprintf(args, sizeof args, "%d, %d, %p", id, cmd, (void *)buf);
    DONE("shmctl", r_, 0);
    return r_;
}

int semget(key_t key, int nsems, int flg)
{
    CALL(real_semget(key, nsems, flg));
    char args[96];
    snprintf(args, sizeof args, "%#x, %d, %#o", (unsigned)key, nsems, (unsigned)flg);
    DONE("semget", r_, 0);
    return r_;
}

int semop(int id, struct sembuf *sops, size_t nsops)
{
    CALL(real_semop(id, sops, nsops));
    char args[400];
    int n = snprintf(args, sizeof args, "%d, ", id);
    n += format_sops(args + n, sizeof args - (size_t)n, sops, nsops);
    snprintf(args + n, sizeof args - (size_t)n, ", %zu", nsops);
    DONE("semop", r_, 0);
    return r_;
}

int semtimedop(int id, struct sembuf *sops, size_t nsops, const struct timespec *timeout)
{
    CALL(real_semtimedop(id, sops, nsops, timeout));
    char args[440];
    int n = snprintf(args, sizeof args, "%d, ", id);
    n += format_sops(args + n, sizeof args - (size_t)n, sops, nsops);
    snprintf(args + n, sizeof args - (size_t)n, ", %zu, %p", nsops, (const void *)timeout);
    DONE("semtimedop", r_, 0);
    return r_;
}

int semctl(int id, int num, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    CALL(real_semctl(id, num, cmd, arg));
    char args[96];
    snprintf(args, sizeof args, "%d, %d, %d, %#lx", id, num, cmd, arg);
    DONE("semctl", r_, 0);
    return r_;
}

int shm_open(const char *name, int oflag, mode_t mode)
{
    CALL(real_shm_open(name, oflag, mode));
    char args[128];
    snprintf(args, sizeof args, "\"%.64s\", %#x, %#o", name, (unsigned)oflag, (unsigned)mode);
    DONE("shm_open", r_, 0);
    return r_;
}

int shm_unlink(const char *name)
{
    CALL(real_shm_unlink(name));
    char args[96];
    snprintf(args, sizeof args, "\"%.64s\"", name);
    DONE("shm_unlink", r_, 0);
    return r_;
}
