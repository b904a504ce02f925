/* Differential fuzzer driver: executes a seeded random sequence of every hooked call with
 * adversarial arguments and writes a transcript (arguments, result, errno, what the call wrote)
 * that must be identical with and without the shim. Under the shim it also compares the ledger
 * with the kernel every CHECK_EVERY calls (check.h).
 *
 * usage: driver SEED CALLS CHECK_EVERY TRANSCRIPT [STOP_AT_DIVERGENCE]
 *
 * Everything destructive stays in memory the driver owns: a private zone at a fixed address the
 * kernel never picks on its own, and the mappings the kernel placed for it elsewhere (tracked,
 * used whole). Huge lengths are beyond TASK_SIZE, which every call rejects before acting. The
 * list of functions comes from shmtrace.h: a new SHMTRACE_CALL_* without a generator here is an
 * error at start. */
#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <semaphore.h>
#include <sys/sem.h>
#include <time.h>

#define ZONE ((uintptr_t)0x100000000000UL)
#define HUGE (2UL << 20)
#define ZONE_SIZE (32 * HUGE)
#define MARGIN (4 * HUGE) /* no range starts this close to the zone's end */
#define BIG (1UL << 60)
#define SENTINEL 4242
#define MAX_OUT 16
#define MAX_IDS 8

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
    struct seminfo *__buf;
};

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return n ? rnd() % n : 0; }
static int chance(int pct) { return (int)below(100) < pct; }

/* Mappings the kernel placed outside the zone for us. `attach`: a whole attachment (offset 0
 * at its start), the only kind shmdt is given: for anything else the kernel's walk goes on to
 * whatever lies above, which depends on the layout, not on the sequence. */
static struct {
    uintptr_t addr, len;
    int attach;
} out[MAX_OUT];
static int nout;
/* Ids in order of first appearance, for normalised transcripts and for reuse (stale ones
 * included: removed objects stay in the pool). */
static int shmids[MAX_IDS], nshm, semids[MAX_IDS], nsem;
static int file_fd = -1;
/* The last memfd memfd_create made (-1 before the first): mmap maps it as well. */
static int memfd_fd = -1;
static FILE *tx;
static char line[8192];
static size_t len_line;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + len_line, sizeof line - len_line, fmt, ap);
    va_end(ap);
    if (n > 0)
        len_line = len_line + (size_t)n < sizeof line ? len_line + (size_t)n : sizeof line - 1;
}

/* Addresses as the same thing in every run. */
static void say_addr(uintptr_t a)
{
    if (a >= ZONE && a < ZONE + ZONE_SIZE) {
        say(" Z+%#lx", (unsigned long)(a - ZONE));
        return;
    }
    for (int i = 0; i < nout; i++)
        if (a >= out[i].addr && a < out[i].addr + out[i].len) {
            say(" K%d+%#lx", i, (unsigned long)(a - out[i].addr));
            return;
        }
    if (a == (uintptr_t)MAP_FAILED)
        say(" FAILED");
    else if (a > 0x10000 && a < 0x800000000000UL)
        say(" K?"); /* a kernel choice not (yet) tracked */
    else
        say(" %#lx", (unsigned long)a);
}

static int id_index(int *ids, int *n, int id)
{
    for (int i = 0; i < *n; i++)
        if (ids[i] == id)
            return i;
    if (id >= 0 && *n < MAX_IDS) {
        ids[*n] = id;
        return (*n)++;
    }
    return -1;
}

static void say_id(const char *tag, int *ids, int *n, int id)
{
    int i = id_index(ids, n, id);
    if (i >= 0)
        say(" %s%d", tag, i);
    else
        say(" %d", id);
}

static int pick_id(int *ids, int n)
{
    if (n == 0 || chance(10))
        return chance(50) ? -1 : 0x7ffffff0;
    return ids[below((uint64_t)n)];
}

static key_t pick_key(void)
{
    static const key_t keys[] = {IPC_PRIVATE, 0x5a11, 0x5a12, 0x5a13};
    return keys[below(4)];
}

static uintptr_t zone_page(void) { return ZONE + below((ZONE_SIZE - MARGIN) / PAGE) * PAGE; }

/* An address destructive calls may be given: ours, sometimes unaligned. Mappings the kernel
 * placed are only ever used whole (`whole`: munmap, mremap, shmdt of their start), so that no
 * part of them is freed for the process (or the shim) to reuse while we still call it ours. */
static uintptr_t own_addr(uintptr_t *limit, int whole)
{
    if (whole && nout && chance(20)) {
        int i = (int)below((uint64_t)nout);
        if (whole == 1 || out[i].attach) {
            *limit = out[i].addr + out[i].len;
            return out[i].addr;
        }
    }
    *limit = ZONE + ZONE_SIZE;
    uintptr_t a = zone_page();
    if (chance(15))
        a &= ~(HUGE - 1);
    if (chance(5))
        a += 123;
    return a;
}

/* A length, bounded by `room` unless it is beyond anything the kernel accepts. */
static size_t pick_len(uintptr_t room)
{
    size_t len;
    switch (below(10)) {
    case 0: len = 0; break;
    case 1: len = BIG; break;
    case 2: len = HUGE; break;
    case 3: len = HUGE + 8 * PAGE; break;
    case 4: len = (1 + below(16)) * PAGE - 100; break;
    default: len = (1 + below(16)) * PAGE; break;
    }
    return len == BIG || len <= room ? len : room;
}

static void track(uintptr_t a, size_t len, int huge, int attach)
{
    if (a == (uintptr_t)MAP_FAILED || (a >= ZONE && a < ZONE + ZONE_SIZE) || nout == MAX_OUT)
        return;
    size_t g = huge ? HUGE : PAGE;
    out[nout].addr = a;
    out[nout].len = (len + g - 1) & ~(g - 1);
    out[nout].attach = attach;
    nout++;
}

/* Drops the kernel-placed mappings a call took away (a shmdt finds pieces anywhere). */
static void forget_gone(void)
{
    for (int i = nout - 1; i >= 0; i--)
        if (msync((void *)out[i].addr, out[i].len, MS_ASYNC) != 0 && errno == ENOMEM)
            out[i] = out[--nout];
}

static void untrack(uintptr_t a)
{
    for (int i = 0; i < nout; i++)
        if (out[i].addr == a) {
            out[i] = out[--nout];
            return;
        }
}

static size_t segment_size(int shmid)
{
    struct shmid_ds ds;
    return syscall(SYS_shmctl, shmid, IPC_STAT, &ds) == 0 ? ds.shm_segsz : 0;
}

static int segment_huge(int shmid)
{
    /* A huge segment's attachments are huge-page aligned and rounded: read it back. */
    struct shmid_ds ds;
    return syscall(SYS_shmctl, shmid, IPC_STAT, &ds) == 0 && (ds.shm_perm.mode & 04000);
}

typedef void (*generator)(void);

static void gen_shmget(void)
{
    key_t key = pick_key();
    static const size_t sizes[] = {0, 1, PAGE, 3 * PAGE, 16 * PAGE, HUGE, BIG};
    size_t size = sizes[below(7)];
    int flags = chance(50) ? 0600 : 0400;
    if (chance(70))
        flags |= IPC_CREAT;
    if (chance(30))
        flags |= IPC_EXCL;
    if (chance(15))
        flags |= SHM_HUGETLB;
    say("shmget %#x %#zx %#o ->", key, size, flags);
    errno = SENTINEL;
    int r = shmget(key, size, flags);
    int e = errno;
    say_id("S", shmids, &nshm, r);
    say(" errno=%d", e);
}

static void gen_shmat(void)
{
    int shmid = pick_id(shmids, nshm);
    int flags = 0;
    if (chance(25))
        flags |= SHM_RDONLY;
    if (chance(25))
        flags |= SHM_REMAP;
    if (chance(10))
        flags |= SHM_RND;
    if (chance(5))
        flags |= SHM_EXEC;
    uintptr_t limit, a = 0;
    if (!chance(20)) {
        a = own_addr(&limit, 0);
        size_t size = segment_size(shmid);
        size_t need = segment_huge(shmid) ? (size + HUGE - 1) & ~(HUGE - 1) : size;
        if (a + need > limit || a + need < a)
            a = 0; /* would reach past what we own (REMAP replaces): let the kernel choose */
    }
    say("shmat");
    say_id("S", shmids, &nshm, shmid);
    say_addr(a);
    say(" %#x ->", flags);
    errno = SENTINEL;
    void *r = shmat(shmid, (void *)a, flags);
    int e = errno;
    say_addr((uintptr_t)r);
    say(" errno=%d", e);
    if (r != (void *)-1)
        track((uintptr_t)r, segment_size(shmid), segment_huge(shmid), 1);
}

static void gen_shmdt(void)
{
    uintptr_t limit, a;
    if (chance(5))
        a = 0;
    else
        a = own_addr(&limit, 2);
    say("shmdt");
    say_addr(a);
    say(" ->");
    errno = SENTINEL;
    int r = shmdt((void *)a);
    int e = errno;
    say(" %d errno=%d", r, e);
}

static void gen_shmctl(void)
{
    int shmid = pick_id(shmids, nshm);
    static const int cmds[] = {IPC_STAT, IPC_RMID, IPC_SET, IPC_INFO, SHM_INFO, 999, IPC_STAT | 0x100};
    int cmd = cmds[below(7)];
    struct shmid_ds ds;
    memset(&ds, 0, sizeof ds);
    void *buf = &ds;
    if (cmd == IPC_SET)
        syscall(SYS_shmctl, shmid, IPC_STAT, &ds);
    if (chance(10))
        buf = NULL;
    else if (chance(5))
        buf = (void *)16; /* unmapped: EFAULT */
    say("shmctl");
    say_id("S", shmids, &nshm, shmid);
    say(" %d %s ->", cmd, buf == &ds ? "buf" : buf ? "wild" : "NULL");
    errno = SENTINEL;
    int r = shmctl(shmid, cmd, buf);
    int e = errno;
    if (cmd == IPC_INFO || cmd == SHM_INFO)
        say(" %s", r >= 0 ? "ok" : "-1"); /* the highest index in use: kernel-wide */
    else
        say(" %d", r);
    say(" errno=%d", e);
    if (r >= 0 && buf == &ds && (cmd & 0xff) == IPC_STAT)
        say(" [segsz=%zu nattch=%lu mode=%#o key=%#x]", ds.shm_segsz, (unsigned long)ds.shm_nattch,
            ds.shm_perm.mode, ds.shm_perm.__key);
}

static void gen_semget(void)
{
    key_t key = pick_key();
    static const int counts[] = {0, 1, 3, 250, 100000, -1};
    int nsems = counts[below(6)];
    int flags = 0600;
    if (chance(70))
        flags |= IPC_CREAT;
    if (chance(30))
        flags |= IPC_EXCL;
    say("semget %#x %d %#o ->", key, nsems, flags);
    errno = SENTINEL;
    int r = semget(key, nsems, flags);
    int e = errno;
    say_id("M", semids, &nsem, r);
    say(" errno=%d", e);
}

/* Never blocks: every operation has IPC_NOWAIT. */
static void gen_semop_any(int timed)
{
    int semid = pick_id(semids, nsem);
    struct sembuf ops[4];
    size_t n = below(4) + (chance(5) ? 1000 : 0);
    for (int i = 0; i < 4; i++) {
        ops[i].sem_num = (unsigned short)below(4);
        ops[i].sem_op = (short)((int)below(5) - 2);
        ops[i].sem_flg = IPC_NOWAIT | (chance(30) ? SEM_UNDO : 0);
    }
    struct sembuf *p = chance(5) ? (struct sembuf *)16 : chance(3) ? NULL : ops;
    struct timespec ts = {0, (long)below(1000)};
    const struct timespec *t = chance(70) ? &ts : chance(50) ? NULL : (struct timespec *)16;
    say("%s", timed ? "semtimedop" : "semop");
    say_id("M", semids, &nsem, semid);
    say(" %s %zu", p == ops ? "ops" : p ? "wild" : "NULL", n);
    for (size_t i = 0; p == ops && i < n && i < 4; i++)
        say(" (%u,%d,%#x)", ops[i].sem_num, ops[i].sem_op, ops[i].sem_flg);
    if (timed)
        say(" %s", t == &ts ? "ts" : t ? "wild" : "NULL");
    say(" ->");
    errno = SENTINEL;
    int r = timed ? semtimedop(semid, p, n, t) : semop(semid, p, n);
    int e = errno;
    say(" %d errno=%d", r, e);
}

static void gen_semop(void) { gen_semop_any(0); }
static void gen_semtimedop(void) { gen_semop_any(1); }

static void gen_semctl(void)
{
    int semid = pick_id(semids, nsem);
    static const int cmds[] = {IPC_STAT, IPC_RMID, GETVAL, SETVAL, GETALL, SETALL, GETPID, GETNCNT, GETZCNT, 999};
    int cmd = cmds[below(10)];
    int semnum = (int)below(4) - (chance(5) ? 10 : 0);
    struct semid_ds ds;
    unsigned short vals[256];
    memset(&ds, 0, sizeof ds);
    for (int i = 0; i < 256; i++)
        vals[i] = (unsigned short)below(3);
    union semun arg;
    if (cmd == SETVAL)
        arg.val = (int)below(4) - 1;
    else if (cmd == GETALL || cmd == SETALL)
        arg.array = vals;
    else
        arg.buf = &ds;
    say("semctl");
    say_id("M", semids, &nsem, semid);
    say(" %d %d ->", semnum, cmd);
    errno = SENTINEL;
    int r = semctl(semid, semnum, cmd, arg);
    int e = errno;
    if (cmd == GETPID && r > 0)
        say(" pid");
    else
        say(" %d", r);
    say(" errno=%d", e);
    if (r >= 0 && cmd == IPC_STAT)
        say(" [nsems=%lu mode=%#o]", (unsigned long)ds.sem_nsems, ds.sem_perm.mode);
    if (r >= 0 && cmd == GETALL) {
        say(" [");
        for (int i = 0; i < 4; i++)
            say("%u,", vals[i]);
        say("]");
    }
}

static void gen_mmap_any(int is64)
{
    int prot = (int[]){PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE, PROT_READ | PROT_EXEC}[below(4)];
    int flags = (int[]){MAP_PRIVATE | MAP_ANONYMOUS, MAP_SHARED | MAP_ANONYMOUS, MAP_SHARED, MAP_PRIVATE,
                        MAP_SHARED_VALIDATE | 0x4000000}[below(5)];
    int fixed = 0;
    if (chance(35))
        fixed = MAP_FIXED;
    else if (chance(15))
        fixed = MAP_FIXED_NOREPLACE;
    if (chance(10))
        flags |= MAP_HUGETLB;
    flags |= fixed;
    uintptr_t limit, a = own_addr(&limit, 0);
    if (!fixed && chance(30))
        a = 0;
    size_t len = pick_len(limit - a);
    int fd = flags & MAP_ANONYMOUS ? -1 : chance(90) ? file_fd : 999;
    if (fd == file_fd && memfd_fd >= 0 && chance(30))
        fd = memfd_fd;
    off_t off = chance(80) ? 0 : chance(50) ? (off_t)PAGE : 100;
    say("%s", is64 ? "mmap64" : "mmap");
    say_addr(a);
    say(" %#zx %d %#x %s %ld ->", len, prot, flags,
        fd < 0 ? "-1" : fd == file_fd ? "file" : fd == memfd_fd ? "memfd" : "bad", (long)off);
    errno = SENTINEL;
    void *r = is64 ? mmap64((void *)a, len, prot, flags, fd, off) : mmap((void *)a, len, prot, flags, fd, off);
    int e = errno;
    if (r != MAP_FAILED)
        track((uintptr_t)r, len, flags & MAP_HUGETLB, 0);
    say_addr((uintptr_t)r);
    say(" errno=%d", e);
}

static void gen_mmap(void) { gen_mmap_any(0); }
static void gen_mmap64(void) { gen_mmap_any(1); }

static void gen_munmap(void)
{
    uintptr_t limit, a = own_addr(&limit, 1);
    size_t len = pick_len(limit - a);
    int whole = 0;
    for (int i = 0; i < nout; i++)
        if (out[i].addr == a) {
            len = out[i].len; /* kernel-placed mappings go whole */
            whole = 1;
        }
    say("munmap");
    say_addr(a);
    say(" %#zx ->", len);
    errno = SENTINEL;
    int r = munmap((void *)a, len);
    int e = errno;
    say(" %d errno=%d", r, e);
    if (r == 0 && whole)
        untrack(a);
}

static void gen_mremap(void)
{
    uintptr_t limit, a = own_addr(&limit, 1);
    int from_out = -1;
    for (int i = 0; i < nout; i++)
        if (out[i].addr == a)
            from_out = i;
    size_t old_len = from_out >= 0 ? out[from_out].len : pick_len(limit - a);
    if (chance(10))
        old_len = chance(50) ? 0 : BIG;
    int flags = (int[]){0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED, MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
                        MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, MREMAP_FIXED, 0x80}[below(7)];
    /* Whether a kernel-placed mapping can grow in place depends on what the process (and the
     * shim) mapped next to it: only a call free to move is the same call in every run. */
    if (from_out >= 0)
        flags |= MREMAP_MAYMOVE;
    uintptr_t target = 0, tlimit = 0;
    if (flags & MREMAP_FIXED) {
        target = zone_page();
        if (chance(20))
            target &= ~(HUGE - 1);
        tlimit = ZONE + ZONE_SIZE;
    }
    size_t new_len;
    if (chance(40) && old_len != BIG && old_len)
        new_len = old_len;
    else
        new_len = pick_len(flags & MREMAP_FIXED ? tlimit - target : HUGE + 16 * PAGE);
    if (new_len == BIG && !(flags & MREMAP_FIXED) && chance(50))
        new_len = PAGE;
    say("mremap");
    say_addr(a);
    say(" %#zx %#zx %#x", old_len, new_len, flags);
    say_addr(target);
    say(" ->");
    errno = SENTINEL;
    void *r = mremap((void *)a, old_len, new_len, flags, (void *)target);
    int e = errno;
    if (r != MAP_FAILED) {
        int in_zone = (uintptr_t)r >= ZONE && (uintptr_t)r < ZONE + ZONE_SIZE;
        if (from_out >= 0 && old_len && !(flags & MREMAP_DONTUNMAP)) {
            /* Moved or resized in place, it keeps its number: which one depends on layout. */
            if (in_zone) {
                untrack(a);
            } else {
                out[from_out].addr = (uintptr_t)r;
                out[from_out].len = (new_len + PAGE - 1) & ~(PAGE - 1);
            }
        } else if ((uintptr_t)r != a) {
            track((uintptr_t)r, new_len, 0, from_out >= 0 && !old_len ? out[from_out].attach : 0);
        }
    }
    say_addr((uintptr_t)r);
    say(" errno=%d", e);
}

/* POSIX names: three of this process's own (the pid keeps concurrent runs apart; the transcript
 * shows the index only) and two libc refuses (a slash inside, empty). */
#define NAMES 5
static char names[NAMES][64];

static void make_names(void)
{
    for (int i = 0; i < 3; i++)
        snprintf(names[i], sizeof names[i], "/shmtrace-fuzz-%d-%d", (int)getpid(), i);
    snprintf(names[3], sizeof names[3], "/shmtrace/fuzz");
    names[4][0] = 0;
}

static void gen_shm_open(void)
{
    int n = (int)below(NAMES);
    static const int oflags[] = {O_RDONLY, O_RDWR, O_RDWR | O_CREAT, O_RDWR | O_CREAT | O_EXCL,
                                 O_RDONLY | O_CREAT, O_RDWR | O_TRUNC, O_WRONLY};
    int oflag = oflags[below(7)];
    mode_t mode = chance(50) ? 0600 : 0400;
    say("shm_open N%d %#x %#o ->", n, oflag, mode);
    errno = SENTINEL;
    int r = shm_open(names[n], oflag, mode);
    int e = errno;
    /* The number the kernel picks depends on the shim's own descriptors: only success shows. */
    say(" %s errno=%d", r >= 0 ? "fd" : "-1", e);
    if (r >= 0)
        close(r);
}

static void gen_shm_unlink(void)
{
    int n = (int)below(NAMES);
    say("shm_unlink N%d ->", n);
    errno = SENTINEL;
    int r = shm_unlink(names[n]);
    int e = errno;
    say(" %d errno=%d", r, e);
}

/* memfd_create with good and refused names and flags; a new memfd replaces the last one (sized
 * for mmap: whole huge pages for MFD_HUGETLB). */
static void gen_memfd_create(void)
{
    static char longname[300];
    memset(longname, 'm', sizeof longname - 1);
    const char *names_[] = {"shmtrace-fuzz", "", NULL, (const char *)1, longname};
    int n = (int)below(5);
    static const unsigned flags_[] = {0, MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB,
                                      MFD_HUGETLB | (21U << 26), 0x100, 21U << 26};
    unsigned flags = flags_[below(7)];
    say("memfd_create M%d %#x ->", n, flags);
    errno = SENTINEL;
    int r = memfd_create(names_[n], flags);
    int e = errno;
    say(" %s errno=%d", r >= 0 ? "fd" : "-1", e);
    if (r < 0)
        return;
    if (memfd_fd >= 0)
        close(memfd_fd);
    memfd_fd = r;
    off_t size = flags & MFD_HUGETLB ? 2 * (off_t)HUGE : 64 * (off_t)PAGE;
    say(" ftruncate %d", ftruncate(memfd_fd, size) == 0 ? 0 : -1);
}

/* Named semaphores on the same names (their files are /dev/shm/sem.NAME). glibc maps a name
 * once and counts its opens, so a semaphore is a slot numbered in order of first appearance
 * with its count of opens; the transcript shows slots, never addresses. sem_close is given
 * an open semaphore, or an address glibc never returned (NULL, 1, the zone): never one it
 * unmapped, which it may hand out again in one run and not in the other. */
#define SEM_SLOTS 64
static struct { sem_t *sem; int opens, number; } sems[SEM_SLOTS];
static int nsems_open, sem_numbers;

static void gen_sem_close(void)
{
    sem_t *s;
    int slot = -1;
    if (nsems_open > 0 && chance(80)) {
        slot = (int)below((uint64_t)nsems_open);
        s = sems[slot].sem;
        say("sem_close P%d ->", sems[slot].number);
    } else {
        static const char *const what[] = {"NULL", "wild", "zone"};
        int k = (int)below(3);
        s = k == 0 ? NULL : k == 1 ? (sem_t *)1 : (sem_t *)zone_page();
        say("sem_close %s ->", what[k]);
    }
    errno = SENTINEL;
    sem_t *volatile arg = s; /* past sem_close's nonnull */
    int r = sem_close(arg);
    int e = errno;
    say(" %d errno=%d", r, e);
    if (r == 0 && slot >= 0 && --sems[slot].opens == 0)
        sems[slot] = sems[--nsems_open];
}

static void gen_sem_open(void)
{
    if (nsems_open == SEM_SLOTS) { /* never in practice: three names */
        gen_sem_close();
        return;
    }
    int n = (int)below(NAMES);
    static const int oflags[] = {0, O_CREAT, O_CREAT | O_EXCL, O_EXCL, O_RDWR | O_CREAT};
    int oflag = oflags[below(5)];
    mode_t mode = chance(50) ? 0600 : 0400;
    unsigned value = chance(10) ? (unsigned)SEM_VALUE_MAX + 1u : (unsigned)below(3);
    say("sem_open N%d %#x %#o %u ->", n, oflag, mode, value);
    errno = SENTINEL;
    sem_t *r = sem_open(names[n], oflag, mode, value);
    int e = errno;
    if (r == SEM_FAILED) {
        say(" FAILED errno=%d", e);
        return;
    }
    int i = 0;
    while (i < nsems_open && sems[i].sem != r)
        i++;
    if (i == nsems_open) {
        sems[i].sem = r;
        sems[i].opens = 0;
        sems[i].number = sem_numbers++;
        nsems_open++;
    }
    sems[i].opens++;
    say(" P%d errno=%d", sems[i].number, e);
}

static void gen_sem_unlink(void)
{
    int n = (int)below(NAMES);
    say("sem_unlink N%d ->", n);
    errno = SENTINEL;
    int r = sem_unlink(names[n]);
    int e = errno;
    say(" %d errno=%d", r, e);
}

static generator generators[SHMTRACE_FUNCTIONS] = {
    [SHMTRACE_CALL_SHMGET] = gen_shmget,   [SHMTRACE_CALL_SHMAT] = gen_shmat,
    [SHMTRACE_CALL_SHMDT] = gen_shmdt,     [SHMTRACE_CALL_SHMCTL] = gen_shmctl,
    [SHMTRACE_CALL_SEMGET] = gen_semget,   [SHMTRACE_CALL_SEMOP] = gen_semop,
    [SHMTRACE_CALL_SEMTIMEDOP] = gen_semtimedop, [SHMTRACE_CALL_SEMCTL] = gen_semctl,
    [SHMTRACE_CALL_MMAP] = gen_mmap,       [SHMTRACE_CALL_MMAP64] = gen_mmap64,
    [SHMTRACE_CALL_MUNMAP] = gen_munmap,   [SHMTRACE_CALL_MREMAP] = gen_mremap,
    [SHMTRACE_CALL_SHM_OPEN] = gen_shm_open, [SHMTRACE_CALL_SHM_UNLINK] = gen_shm_unlink,
    [SHMTRACE_CALL_MEMFD_CREATE] = gen_memfd_create,
    [SHMTRACE_CALL_SEM_OPEN] = gen_sem_open, [SHMTRACE_CALL_SEM_CLOSE] = gen_sem_close,
    [SHMTRACE_CALL_SEM_UNLINK] = gen_sem_unlink,
};

/* How often each function is drawn (the address-space calls are where the ledger works). */
static int weight(int f)
{
    switch (f) {
    case SHMTRACE_CALL_MMAP: case SHMTRACE_CALL_MUNMAP: case SHMTRACE_CALL_MREMAP: return 5;
    case SHMTRACE_CALL_SHMAT: case SHMTRACE_CALL_SHMDT: return 4;
    default: return 1;
    }
}

static long call_no;

static void end_line(void)
{
    fprintf(tx, "%ld %s\n", call_no, line);
    len_line = 0;
    line[0] = 0;
}

static int checkpoint(FILE *report)
{
    char why[512];
    if (!ledger_mapping_at())
        return 1;
    read_maps();
    int ok = check_range(ZONE, ZONE + ZONE_SIZE, why, sizeof why);
    for (int i = 0; ok && i < nout; i++)
        ok = check_range(out[i].addr, out[i].addr + out[i].len, why, sizeof why);
    for (int i = 0; ok && i < nshm; i++)
        ok = check_nattch(shmids[i], why, sizeof why);
    if (!ok)
        fprintf(report, "DIVERGE after call %ld: %s\n", call_no, why);
    return ok;
}

/* FUZZ_DUMP_AT=N: the zone's mappings before and after call N, on stderr (for narrowing). */
static long dump_at = -1;

static void dump_zone(const char *when)
{
    read_maps();
    fprintf(stderr, "-- %s call %ld\n", when, call_no);
    for (int i = 0; i < nvmas; i++)
        if (vmas[i].start >= ZONE && vmas[i].start < ZONE + ZONE_SIZE)
            fprintf(stderr, "Z+%#lx-Z+%#lx prot=%d shmid=%d\n", (unsigned long)(vmas[i].start - ZONE),
                    (unsigned long)(vmas[i].end - ZONE), vmas[i].prot, vmas[i].shmid);
    struct shmtrace_mapping m;
    for (uintptr_t a = ZONE; ledger_mapping_at() && a < ZONE + ZONE_SIZE; a += PAGE)
        if (ledger_mapping_at()((void *)a, &m) == SHMTRACE_OK) {
            fprintf(stderr, "ledger Z+%#lx-Z+%#lx prot=%d kind=%d shmid=%d\n", (unsigned long)(m.start - ZONE),
                    (unsigned long)(m.end - ZONE), m.prot, m.kind, m.shmid);
            a = m.end - PAGE;
        }
}

int main(int argc, char **argv)
{
    if (getenv("FUZZ_DUMP_AT"))
        dump_at = strtol(getenv("FUZZ_DUMP_AT"), NULL, 0);
    if (argc < 5) {
        fprintf(stderr, "usage: %s SEED CALLS CHECK_EVERY TRANSCRIPT [STOP]\n", argv[0]);
        return 2;
    }
    for (int f = 0; f < SHMTRACE_FUNCTIONS; f++)
        if (!generators[f]) {
            fprintf(stderr, "driver: no argument generator for SHMTRACE_CALL %d\n", f);
            return 2;
        }
    rng_state = strtoull(argv[1], NULL, 0);
    long calls = strtol(argv[2], NULL, 0), every = strtol(argv[3], NULL, 0);
    int stop = argc > 5;
    tx = fopen(argv[4], "we");
    char path[] = "/tmp/shmtrace-fuzz-XXXXXX";
    file_fd = mkstemp(path);
    if (!tx || file_fd < 0 || ftruncate(file_fd, 64 * PAGE) != 0) {
        perror("driver");
        return 2;
    }
    unlink(path);
    make_names();
    int total = 0;
    for (int f = 0; f < SHMTRACE_FUNCTIONS; f++)
        total += weight(f);
    int diverged = 0;
    for (call_no = 0; call_no < calls; call_no++) {
        int pick = (int)below((uint64_t)total), f = 0;
        while (pick >= weight(f))
            pick -= weight(f++);
        if (call_no == dump_at)
            dump_zone("before");
        generators[f]();
        end_line();
        if (call_no == dump_at)
            dump_zone("after");
        forget_gone();
        if (every > 0 && (call_no + 1) % every == 0 && !checkpoint(stderr)) {
            diverged = 1;
            if (stop)
                break;
        }
    }
    /* Clean up through the hooked calls, so the ledger must end clean too. */
    for (int i = nout - 1; i >= 0; i--) {
        say("cleanup munmap");
        say_addr(out[i].addr);
        say(" %#zx -> %d", (size_t)out[i].len, munmap((void *)out[i].addr, out[i].len));
        end_line();
    }
    nout = 0;
    say("cleanup munmap zone -> %d", munmap((void *)ZONE, ZONE_SIZE));
    end_line();
    for (int i = 0; i < nshm; i++) {
        say("cleanup shmctl");
        say_id("S", shmids, &nshm, shmids[i]);
        say(" IPC_RMID -> %d", shmctl(shmids[i], IPC_RMID, NULL) == 0 ? 0 : -1);
        end_line();
    }
    for (int i = 0; i < nsem; i++) {
        say("cleanup semctl");
        say_id("M", semids, &nsem, semids[i]);
        say(" IPC_RMID -> %d", semctl(semids[i], 0, IPC_RMID) == 0 ? 0 : -1);
        end_line();
    }
    for (int i = 0; i < 3; i++) {
        say("cleanup shm_unlink N%d -> %d", i, shm_unlink(names[i]) == 0 ? 0 : -1);
        end_line();
    }
    while (nsems_open > 0) {
        say("cleanup sem_close P%d -> %d", sems[0].number, sem_close(sems[0].sem));
        end_line();
        if (--sems[0].opens == 0)
            sems[0] = sems[--nsems_open];
    }
    for (int i = 0; i < 3; i++) {
        say("cleanup sem_unlink N%d -> %d", i, sem_unlink(names[i]) == 0 ? 0 : -1);
        end_line();
    }
    if (!diverged && !checkpoint(stderr))
        diverged = 1;
    fclose(tx);
    return diverged ? 3 : 0;
}
