/* The C stand-in of `make bench`: what a careful C engineer would write in an afternoon to log
 * the same calls. Preloaded like the shim, it forwards each call to libc and logs one line per
 * call, formatted with snprintf into a stack buffer and written with one write(2) to an
 * O_APPEND file: the same shape as the shim's text record (pid, entry time, arguments, result,
 * errno, duration, caller), with flags as numbers instead of names, and no ledger.
 *
 *   STANDIN_LOG=PATH  the log file (a ".PID" is appended); without it nothing is logged
 *
 * It interposes every call the shim hooks: shmget shmat shmdt shmctl semget semop semtimedop
 * semctl mmap mmap64 munmap mremap shm_open shm_unlink memfd_create sem_open sem_close
 * sem_unlink msgget msgsnd msgrcv msgctl. Real functions are resolved with dlsym(RTLD_NEXT) in
 * the constructor (or at first use, for a call made before it ran); the pid is cached (getpid
 * is a system call). Like the shim, it logs only the outermost call of a thread: a hooked call
 * libc makes inside another (sem_open's mmap) is forwarded unlogged. Names are read after the
 * call, as the shim's text record reads them: the first 63 bytes, escaped, memfd_create's only
 * after a success (the kernel reads it only then). */
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
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/msg.h>
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
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);
static int (*real_memfd_create)(const char *, unsigned);
static sem_t *(*real_sem_open)(const char *, int, ...);
static int (*real_sem_close)(sem_t *);
static int (*real_sem_unlink)(const char *);
static int (*real_msgget)(key_t, int);
static int (*real_msgsnd)(int, const void *, size_t, int);
static ssize_t (*real_msgrcv)(int, void *, size_t, long, int);
static int (*real_msgctl)(int, int, struct msqid_ds *);

/* How many hooked calls this thread is inside: only the outermost is logged. */
static __thread int depth __attribute__((tls_model("initial-exec")));

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
    RESOLVE(mmap64);
    RESOLVE(memfd_create);
    RESOLVE(sem_open);
    RESOLVE(sem_close);
    RESOLVE(sem_unlink);
    RESOLVE(msgget);
    RESOLVE(msgsnd);
    RESOLVE(msgrcv);
    RESOLVE(msgctl);
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

/* `name` as the shim's text record shows a name it read: quoted, the first 63 bytes with
 * quotes, backslashes and unprintable bytes escaped, "..." when longer; the pointer when it was
 * not read. */
static int format_name(char *out, size_t size, const char *name, int read)
{
    if (!read || !name)
        return snprintf(out, size, "%p", (const void *)name);
    size_t n = 0, i;
    out[n++] = '"';
    for (i = 0; i < 63 && name[i]; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    n += (size_t)snprintf(out + n, size - n, name[i] ? "\"..." : "\"");
    return (int)n;
}

/* The names' buffers: a name of 63 bytes each escaped as \xNN, quotes and "...". */
#define NAME_ROOM (63 * 4 + 8)

/* The real call, forwarded unlogged inside another hooked call of this thread (libc's own
 * calls, such as sem_open's mmap); else timed, with errno kept for the caller. */
#define CALL(name, ...)                                                                            \
    if (__builtin_expect(real_##name == NULL, 0)) /* called by a constructor run before ours */   \
        RESOLVE(name);                                                                             \
    if (depth)                                                                                     \
        return real_##name(__VA_ARGS__);                                                           \
    depth++;                                                                                       \
    uint64_t t0_ = now_ns();                                                                       \
    __typeof__(real_##name(__VA_ARGS__)) r_ = real_##name(__VA_ARGS__);                            \
    int saved_errno_ = errno

#define DONE(fn, ret, ptr)                                                                         \
    emit(fn, args, (long)(ret), ptr, saved_errno_, t0_, __builtin_return_address(0));              \
    depth--;                                                                                       \
    errno = saved_errno_

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    CALL(mmap, addr, len, prot, flags, fd, off);
    char args[160];
    snprintf(args, sizeof args, "%p, %zu, %#x, %#x, %d, %#lx", addr, len, prot, flags, fd, (long)off);
    DONE("mmap", r_ == MAP_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int munmap(void *addr, size_t len)
{
    CALL(munmap, addr, len);
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
    CALL(mremap, old, old_size, new_size, flags, new_addr);
    char args[128];
    snprintf(args, sizeof args, "%p, %zu, %zu, %#x", old, old_size, new_size, flags);
    DONE("mremap", r_ == MAP_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int shmget(key_t key, size_t size, int flg)
{
    CALL(shmget, key, size, flg);
    char args[96];
    snprintf(args, sizeof args, "%#x, %zu, %#o", (unsigned)key, size, (unsigned)flg);
    DONE("shmget", r_, 0);
    return r_;
}

void *shmat(int id, const void *addr, int flg)
{
    CALL(shmat, id, addr, flg);
    char args[96];
    snprintf(args, sizeof args, "%d, %p, %#x", id, addr, (unsigned)flg);
    DONE("shmat", r_ == (void *)-1 ? -1 : (long)r_, 1);
    return r_;
}

int shmdt(const void *addr)
{
    CALL(shmdt, addr);
    char args[32];
    snprintf(args, sizeof args, "%p", addr);
    DONE("shmdt", r_, 0);
    return r_;
}

int shmctl(int id, int cmd, struct shmid_ds *buf)
{
    CALL(shmctl, id, cmd, buf);
    char args[96];
    snprintf(args, sizeof args, "%d, %d, %p", id, cmd, (void *)buf);
    DONE("shmctl", r_, 0);
    return r_;
}

int semget(key_t key, int nsems, int flg)
{
    CALL(semget, key, nsems, flg);
    char args[96];
    snprintf(args, sizeof args, "%#x, %d, %#o", (unsigned)key, nsems, (unsigned)flg);
    DONE("semget", r_, 0);
    return r_;
}

int semop(int id, struct sembuf *sops, size_t nsops)
{
    CALL(semop, id, sops, nsops);
    char args[400];
    int n = snprintf(args, sizeof args, "%d, ", id);
    n += format_sops(args + n, sizeof args - (size_t)n, sops, nsops);
    snprintf(args + n, sizeof args - (size_t)n, ", %zu", nsops);
    DONE("semop", r_, 0);
    return r_;
}

int semtimedop(int id, struct sembuf *sops, size_t nsops, const struct timespec *timeout)
{
    CALL(semtimedop, id, sops, nsops, timeout);
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
    CALL(semctl, id, num, cmd, arg);
    char args[96];
    snprintf(args, sizeof args, "%d, %d, %d, %#lx", id, num, cmd, arg);
    DONE("semctl", r_, 0);
    return r_;
}

int shm_open(const char *name, int oflag, mode_t mode)
{
    CALL(shm_open, name, oflag, mode);
    char args[NAME_ROOM + 32];
    int n = format_name(args, sizeof args, name, 1);
    snprintf(args + n, sizeof args - (size_t)n, ", %#x, %#o", (unsigned)oflag, (unsigned)mode);
    DONE("shm_open", r_, 0);
    return r_;
}

int shm_unlink(const char *name)
{
    CALL(shm_unlink, name);
    char args[NAME_ROOM];
    format_name(args, sizeof args, name, 1);
    DONE("shm_unlink", r_, 0);
    return r_;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    CALL(mmap64, addr, len, prot, flags, fd, off);
    char args[160];
    snprintf(args, sizeof args, "%p, %zu, %#x, %#x, %d, %#lx", addr, len, prot, flags, fd, (long)off);
    DONE("mmap64", r_ == MAP_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int memfd_create(const char *name, unsigned flags)
{
    CALL(memfd_create, name, flags);
    char args[NAME_ROOM + 16];
    int n = format_name(args, sizeof args, name, r_ >= 0);
    snprintf(args + n, sizeof args - (size_t)n, ", %#x", flags);
    DONE("memfd_create", r_, 0);
    return r_;
}

/* mode and value are there only with O_CREAT, as sem_open reads them. */
sem_t *sem_open(const char *name, int oflag, ...)
{
    mode_t mode = 0;
    unsigned value = 0;
    if (oflag & O_CREAT) {
        va_list ap;
        va_start(ap, oflag);
        mode = va_arg(ap, mode_t);
        value = va_arg(ap, unsigned);
        va_end(ap);
    }
    CALL(sem_open, name, oflag, mode, value);
    char args[NAME_ROOM + 48];
    int n = format_name(args, sizeof args, name, 1);
    if (oflag & O_CREAT)
        snprintf(args + n, sizeof args - (size_t)n, ", %#x, %#o, %u", (unsigned)oflag,
                 (unsigned)mode, value);
    else
        snprintf(args + n, sizeof args - (size_t)n, ", %#x", (unsigned)oflag);
    DONE("sem_open", r_ == SEM_FAILED ? -1 : (long)r_, 1);
    return r_;
}

int sem_close(sem_t *sem)
{
    CALL(sem_close, sem);
    char args[32];
    snprintf(args, sizeof args, "%p", (void *)sem);
    DONE("sem_close", r_, 0);
    return r_;
}

int sem_unlink(const char *name)
{
    CALL(sem_unlink, name);
    char args[NAME_ROOM];
    format_name(args, sizeof args, name, 1);
    DONE("sem_unlink", r_, 0);
    return r_;
}

int msgget(key_t key, int flg)
{
    CALL(msgget, key, flg);
    char args[64];
    snprintf(args, sizeof args, "%#x, %#o", (unsigned)key, (unsigned)flg);
    DONE("msgget", r_, 0);
    return r_;
}

int msgsnd(int id, const void *msgp, size_t size, int flg)
{
    CALL(msgsnd, id, msgp, size, flg);
    char args[96];
    snprintf(args, sizeof args, "%d, %p, %zu, %#x", id, msgp, size, (unsigned)flg);
    DONE("msgsnd", r_, 0);
    return r_;
}

ssize_t msgrcv(int id, void *msgp, size_t size, long type, int flg)
{
    CALL(msgrcv, id, msgp, size, type, flg);
    char args[128];
    snprintf(args, sizeof args, "%d, %p, %zu, %ld, %#x", id, msgp, size, type, (unsigned)flg);
    DONE("msgrcv", r_, 0);
    return r_;
}

int msgctl(int id, int cmd, struct msqid_ds *buf)
{
    CALL(msgctl, id, cmd, buf);
    char args[96];
    snprintf(args, sizeof args, "%d, %d, %p", id, cmd, (void *)buf);
    DONE("msgctl", r_, 0);
    return r_;
}
