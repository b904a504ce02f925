/*
 * ledger.h - helpers shared by the ledger_*.c scenarios (linked with -lshmtrace). Each one
 * checks the shim's ledger (the C API in <shmtrace.h>) against the kernel's own view, in the
 * same run: /proc/self/maps for mappings, IPC_STAT and /proc/sysvipc for SysV objects.
 * Include it after harness.h (which removes every segment and set created through CALL_INT
 * at exit and on fatal signals).
 *
 * A program is a table of cases (LEDGER_CASES): `prog CASE...` runs those, `prog` runs all,
 * `prog --list` names them. A failed check prints one line `FAIL prog case, line N: ...` on
 * stdout and the program exits 1; nothing is printed on success. After each case the process
 * must hold nothing (shmtrace_leak_count() == 0).
 *
 * The kernel's view is read with open/read into static buffers, never through malloc or mmap,
 * which could map something new over the very pages being compared. The kernel's SysV view
 * comes from raw system calls, so it never depends on the shim forwarding them right.
 */
#ifndef LEDGER_H
#define LEDGER_H

#include <stdarg.h>
#include <sys/wait.h>

#include <shmtrace.h>

#include "mapview.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef SHM_DEST
#define SHM_DEST 01000
#endif

#define RW (PROT_READ | PROT_WRITE)

static long pg;                       /* the page size */
#define P(n) ((size_t)(n) * (size_t)pg) /* n pages, in bytes */

/* ---- reporting -------------------------------------------------------------------- */

static const char *lg_prog = "ledger", *lg_case = "-";
static int lg_failures;

static inline void lg_fail(int line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void lg_fail(int line, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s %s, line %d: ", lg_prog, lg_case, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    lg_failures++;
}

/* A check: on failure, one FAIL line and the case goes on. */
#define EXPECT(cond, ...)                   \
    do {                                    \
        if (!(cond))                        \
            lg_fail(__LINE__, __VA_ARGS__); \
    } while (0)
#define EXPECT_EQ(what, got, want)                                                          \
    do {                                                                                    \
        long g_ = (long)(got), w_ = (long)(want);                                           \
        EXPECT(g_ == w_, "%s: %ld, expected %ld", what, g_, w_);                            \
    } while (0)
/* A step the case cannot go on without (the kernel refused a call): FAIL and exit. */
#define MUST(cond)                                                                          \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            lg_fail(__LINE__, "%s (errno %s)", #cond, h_errname(errno));                    \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* ---- the ledger's figures ------------------------------------------------------------ */

static inline shmtrace_stats stats(void)
{
    shmtrace_stats s;
    MUST(shmtrace_get_stats(&s) == SHMTRACE_OK);
    return s;
}

static inline long leaks(void)
{
    return (long)shmtrace_leak_count();
}

/* The ledger holds `maps` more mappings and `pages` more pages than at `before`. */
#define EXPECT_HELD(before, maps, pages)                                                    \
    do {                                                                                    \
        shmtrace_stats now_ = stats();                                                      \
        EXPECT_EQ("ledger: stats.mappings - before", now_.mappings - (before).mappings,     \
                  (maps));                                                                  \
        EXPECT_EQ("ledger: stats.bytes_mapped - before (pages)",                            \
                  (long)(now_.bytes_mapped - (before).bytes_mapped) / pg, (pages));         \
    } while (0)

/* ---- mappings: the kernel's view against the ledger's, page by page (mapview.h) ------- */

static char lg_buf[1 << 20];

/* Reads a whole /proc file into lg_buf (NUL-terminated). */
static inline void lg_slurp(const char *path)
{
    MUST(mapview_slurp(path, lg_buf, sizeof lg_buf) >= 0);
}

/* What the ledger says is mapped at `addr`. */
static inline struct mapview ledger_at(uintptr_t addr)
{
    shmtrace_result r;
    struct mapview v = mapview_ledger_at(shmtrace_mapping_at, addr, &r);
    MUST(r == SHMTRACE_OK || r == SHMTRACE_NOT_FOUND);
    return v;
}

/* NULL if the kernel and the ledger agree on every page of [start, start + len) (mapped or
 * not; if mapped: protection, shared or private, anonymous / file / shm and which shmid),
 * else the first disagreement with both views. */
static inline const char *disagreement(const void *start, size_t len)
{
    MUST(mapview_load() == 0);
    return mapview_disagreement(shmtrace_mapping_at, start, len, -1);
}

/* /proc/self/maps and the ledger agree on the `pages` pages at `start`. */
#define AGREE(start, pages)                                                                  \
    do {                                                                                     \
        const char *d_ = disagreement((start), P(pages));                                    \
        EXPECT(!d_, "%s, %d pages: /proc/self/maps and the ledger disagree: %s", #start,     \
               (int)(pages), d_);                                                            \
    } while (0)

/* How many distinct mappings of segment `shmid` the ledger has in [start, start + len):
 * compare with the kernel's nattch, which counts VMAs (a split attachment counts twice). */
static inline long ledger_pieces(const void *start, size_t len, int shmid)
{
    long n = 0;
    uintptr_t last = 0;
    for (size_t off = 0; off < len; off += (size_t)pg) {
        struct mapview v = ledger_at((uintptr_t)start + off);
        if (v.mapped && v.shmid == shmid && v.start != last) {
            n++;
            last = v.start;
        }
    }
    return n;
}

/* ---- SysV objects: the kernel's view -------------------------------------------------- */

static inline int kernel_shm_stat(int shmid, struct shmid_ds *ds)
{
    return syscall(SYS_shmctl, shmid, IPC_STAT, ds) == 0;
}

static inline long kernel_nattch(int shmid)
{
    struct shmid_ds ds;
    return kernel_shm_stat(shmid, &ds) ? (long)ds.shm_nattch : -1;
}

static inline int kernel_sem_exists(int semid)
{
    struct semid_ds ds;
    return syscall(SYS_semctl, semid, 0, IPC_STAT, &ds) == 0;
}

/* Whether /proc/sysvipc/<kind> ("shm" or "sem") lists `id`; for "shm", *nattch gets its
 * nattch column (key shmid perms size cpid lpid nattch ...). */
static inline int sysvipc_lists(const char *kind, int id, long *nattch)
{
    char path[32];
    snprintf(path, sizeof path, "/proc/sysvipc/%s", kind);
    lg_slurp(path);
    for (char *line = strchr(lg_buf, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long f[7];
        char *p = line + 1;
        for (int i = 0; i < 7; i++)
            f[i] = strtol(p, &p, 10);
        if (f[1] == id) {
            if (nattch)
                *nattch = f[6];
            return 1;
        }
    }
    return 0;
}

/* NULL if the ledger's attachments of `shmid`, the kernel's shm_nattch (IPC_STAT) and the
 * nattch in /proc/sysvipc/shm all equal `n`, else all three. Only valid while no attachment
 * of the segment is split (the kernel counts VMAs) and no other process attaches it. */
static inline const char *attachments_disagreement(int shmid, long n)
{
    static char msg[256];
    long proc = -1, ledger = (long)shmtrace_attachments_of(shmid), stat = kernel_nattch(shmid);
    if (!sysvipc_lists("shm", shmid, &proc))
        proc = -1;
    if (ledger == n && stat == n && proc == n)
        return NULL;
    snprintf(msg, sizeof msg,
             "segment %d: shmtrace_attachments_of %ld, IPC_STAT shm_nattch %ld, "
             "/proc/sysvipc/shm nattch %ld, expected %ld (-1: no such segment)",
             shmid, ledger, stat, proc, n);
    return msg;
}

#define AGREE_ATTACHMENTS(shmid, n)                                                          \
    do {                                                                                     \
        const char *d_ = attachments_disagreement((shmid), (n));                             \
        EXPECT(!d_, "%s", d_);                                                               \
    } while (0)

/* The kernel has segment `shmid` (IPC_STAT and /proc/sysvipc/shm) exactly when `alive`. */
#define EXPECT_SHM_EXISTS(shmid, alive)                                                      \
    do {                                                                                     \
        struct shmid_ds ds_;                                                                 \
        int stat_ = kernel_shm_stat((shmid), &ds_), proc_ = sysvipc_lists("shm", (shmid), 0); \
        EXPECT(stat_ == !!(alive) && proc_ == !!(alive),                                     \
               "segment %d should %s: IPC_STAT %s, /proc/sysvipc/shm %s", (shmid),           \
               (alive) ? "exist" : "be gone", stat_ ? "succeeds" : "fails",                  \
               proc_ ? "lists it" : "does not list it");                                     \
    } while (0)

#define EXPECT_SEM_EXISTS(semid, alive)                                                      \
    do {                                                                                     \
        int stat_ = kernel_sem_exists(semid), proc_ = sysvipc_lists("sem", (semid), 0);      \
        EXPECT(stat_ == !!(alive) && proc_ == !!(alive),                                     \
               "semaphore set %d should %s: IPC_STAT %s, /proc/sysvipc/sem %s", (semid),     \
               (alive) ? "exist" : "be gone", stat_ ? "succeeds" : "fails",                  \
               proc_ ? "lists it" : "does not list it");                                     \
    } while (0)

/* ---- making things (SysV objects are removed at exit by harness.h's cleanup) -------- */

static inline char *map(size_t pages, int prot, int flags)
{
    char *m = mmap(NULL, P(pages), prot, flags | MAP_ANONYMOUS, -1, 0);
    MUST(m != MAP_FAILED);
    return m;
}

static inline void unmap(void *start, size_t pages)
{
    MUST(munmap(start, P(pages)) == 0);
}

static inline int new_shm(size_t size)
{
    int id = CALL_INT(NULL, shmget, IPC_PRIVATE, size, IPC_CREAT | 0600);
    MUST(id >= 0);
    return id;
}

static inline int new_sem(int nsems)
{
    int id = CALL_INT(NULL, semget, IPC_PRIVATE, nsems, IPC_CREAT | 0600);
    MUST(id >= 0);
    return id;
}

static inline char *attach(int shmid, const void *addr, int flags)
{
    char *a = shmat(shmid, addr, flags);
    MUST(a != (void *)-1);
    return a;
}

static inline void detach(const void *addr)
{
    MUST(shmdt(addr) == 0);
}

static inline void remove_shm(int shmid)
{
    MUST(rmid_shm(NULL, shmid) == 0);
}

static inline void remove_sem(int semid)
{
    MUST(rmid_sem(NULL, semid) == 0);
}

/* Runs `fn(arg)` in a forked child, which then exits with 1 if a check failed (through
 * exit(): atexit handlers and the exit report run); returns the child's exit status. */
static inline int in_child(void (*fn)(void *), void *arg)
{
    int status;
    pid_t pid = fork();
    MUST(pid >= 0);
    if (pid == 0) {
        fn(arg);
        exit(lg_failures ? 1 : 0);
    }
    MUST(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- the case table ---------------------------------------------------------------- */

struct lg_case {
    const char *name;
    void (*run)(void);
};
#define CASE(fn) {#fn, fn}

static inline void lg_run(const struct lg_case *c)
{
    shmtrace_stats s;
    lg_case = c->name;
    c->run();
    EXPECT_EQ("after the case, shmtrace_leak_count() (every case releases what it made)",
              leaks(), 0);
    s = stats();
    EXPECT(s.internal_failures == 0 && s.untracked == 0,
           "after the case: %lu internal failures, %lu untracked calls",
           (unsigned long)s.internal_failures, (unsigned long)s.untracked);
}

static inline int ledger_main(int argc, char **argv, const struct lg_case *cases, size_t n)
{
    int ran = 0;
    const char *slash = strrchr(argv[0], '/');
    static char prog[64];
    snprintf(prog, sizeof prog, "%s", slash ? slash + 1 : argv[0]);
    if (strchr(prog, '.'))
        *strchr(prog, '.') = '\0';
    lg_prog = prog;
    pg = sysconf(_SC_PAGESIZE);
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int wanted = argc < 2;
        for (int j = 1; j < argc; j++)
            wanted |= strcmp(argv[j], cases[i].name) == 0;
        if (wanted) {
            lg_run(&cases[i]);
            ran++;
        }
    }
    if (argc >= 2 && ran != argc - 1) {
        fprintf(stderr, "%s: unknown case among the arguments (try --list)\n", prog);
        return 2;
    }
    return lg_failures ? 1 : 0;
}

#define LEDGER_CASES(...)                                                                    \
    static const struct lg_case lg_cases[] = {__VA_ARGS__};                                  \
    int main(int argc, char **argv)                                                          \
    {                                                                                        \
        return ledger_main(argc, argv, lg_cases, sizeof lg_cases / sizeof lg_cases[0]);      \
    }

#endif
