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

/* ---- mappings: the kernel's view against the ledger's, page by page ----------------- */

struct view {
    int mapped;
    uintptr_t start, end; /* the kernel's VMA, or the ledger's mapping */
    int prot;             /* PROT_READ | PROT_WRITE | PROT_EXEC */
    int shared;
    int kind;  /* SHMTRACE_MAPPING_* */
    int shmid; /* -1 unless kind is SHMTRACE_MAPPING_SHM */
};

static char lg_buf[1 << 20];
static struct view lg_maps[16384];
static int lg_nmaps;

/* Reads a whole /proc file into lg_buf (NUL-terminated). */
static inline void lg_slurp(const char *path)
{
    size_t n = 0;
    ssize_t r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    MUST(fd >= 0);
    while ((r = read(fd, lg_buf + n, sizeof lg_buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    MUST(r == 0 && n < sizeof lg_buf - 1);
    lg_buf[n] = '\0';
}

/* Parses /proc/self/maps into lg_maps. */
static inline void kernel_load(void)
{
    lg_slurp("/proc/self/maps");
    lg_nmaps = 0;
    for (char *line = lg_buf, *next; *line; line = next) {
        char *p, *path;
        unsigned long inode;
        struct view *v = &lg_maps[lg_nmaps];
        next = strchr(line, '\n');
        next = next ? (*next = '\0', next + 1) : line + strlen(line);
        MUST(lg_nmaps < (int)(sizeof lg_maps / sizeof lg_maps[0]));
        v->mapped = 1;
        v->start = strtoul(line, &p, 16);
        v->end = strtoul(p + 1, &p, 16);
        p++; /* "rw-s" */
        v->prot = (p[0] == 'r' ? PROT_READ : 0) | (p[1] == 'w' ? PROT_WRITE : 0) |
                  (p[2] == 'x' ? PROT_EXEC : 0);
        v->shared = p[3] == 's';
        strtoul(p + 4, &p, 16);  /* offset */
        p = strchr(p + 1, ' ');  /* after the device */
        inode = strtoul(p, &p, 10);
        path = p + strspn(p, " ");
        if (strncmp(path, "/SYSV", 5) == 0) /* a SysV attachment: the inode is the shmid */
            v->kind = SHMTRACE_MAPPING_SHM;
        else if (!*path || strcmp(path, "/dev/zero (deleted)") == 0) /* MAP_SHARED anon */
            v->kind = SHMTRACE_MAPPING_ANONYMOUS;
        else
            v->kind = SHMTRACE_MAPPING_FILE;
        v->shmid = v->kind == SHMTRACE_MAPPING_SHM ? (int)inode : -1;
        lg_nmaps++;
    }
}

/* What the kernel maps at `addr`, as of the last kernel_load(). */
static inline struct view kernel_at(uintptr_t addr)
{
    struct view none = {0, 0, 0, 0, 0, 0, -1};
    for (int i = 0; i < lg_nmaps; i++)
        if (addr >= lg_maps[i].start && addr < lg_maps[i].end)
            return lg_maps[i];
    return none;
}

/* What the ledger says is mapped at `addr`. */
static inline struct view ledger_at(uintptr_t addr)
{
    struct view v = {0, 0, 0, 0, 0, 0, -1};
    shmtrace_mapping m;
    shmtrace_result r = shmtrace_mapping_at((const void *)addr, &m);
    if (r == SHMTRACE_NOT_FOUND)
        return v;
    MUST(r == SHMTRACE_OK);
    v.mapped = 1;
    v.start = m.start;
    v.end = m.end;
    v.prot = m.prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    v.shared = m.shared;
    v.kind = m.kind;
    v.shmid = m.kind == SHMTRACE_MAPPING_SHM ? m.shmid : -1;
    return v;
}

static inline int view_eq(struct view a, struct view b)
{
    if (!a.mapped || !b.mapped)
        return a.mapped == b.mapped;
    return a.prot == b.prot && a.shared == b.shared && a.kind == b.kind && a.shmid == b.shmid;
}

static inline const char *describe(struct view v, char *buf, size_t size)
{
    static const char *const kinds[] = {"anon", "file", "shm", "unknown"};
    if (!v.mapped)
        return "unmapped";
    snprintf(buf, size, "%c%c%c%c %s", v.prot & PROT_READ ? 'r' : '-',
             v.prot & PROT_WRITE ? 'w' : '-', v.prot & PROT_EXEC ? 'x' : '-',
             v.shared ? 's' : 'p', v.kind >= 0 && v.kind < 4 ? kinds[v.kind] : "kind?");
    if (v.kind == SHMTRACE_MAPPING_SHM)
        snprintf(buf + strlen(buf), size - strlen(buf), " shmid=%d", v.shmid);
    snprintf(buf + strlen(buf), size - strlen(buf), " [%#lx-%#lx)", (unsigned long)v.start,
             (unsigned long)v.end);
    return buf;
}

/* NULL if the kernel and the ledger agree on every page of [start, start + len) (mapped or
 * not; if mapped: protection, shared or private, anonymous / file / shm and which shmid),
 * else the first disagreement with both views. */
static inline const char *disagreement(const void *start, size_t len)
{
    static char msg[512];
    char k[160], l[160];
    kernel_load();
    for (size_t off = 0; off < len; off += (size_t)pg) {
        uintptr_t a = (uintptr_t)start + off;
        struct view kv = kernel_at(a), lv = ledger_at(a);
        if (!view_eq(kv, lv)) {
            snprintf(msg, sizeof msg, "page %zu (%#lx): kernel %s, ledger %s",
                     off / (size_t)pg, (unsigned long)a, describe(kv, k, sizeof k),
                     describe(lv, l, sizeof l));
            return msg;
        }
    }
    return NULL;
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
        struct view v = ledger_at((uintptr_t)start + off);
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
