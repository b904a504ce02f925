/*
 * fork: processes made while other threads are inside hooks, vfork and posix_spawn children,
 * and a tree of processes sharing one log.
 *
 *     fork storm SECONDS   4 threads hammer mmap/munmap/semop/shm while the main thread forks
 *                          (and every few rounds vforks, or posix_spawns `spawned`). Each fork
 *                          child checks, against /proc/self/maps, the parent's mappings it
 *                          inherited (settled ones) and its own, then exits; one that does not
 *                          end within 10 s is reported `HUNG pid`.
 *     fork spawn           single-threaded: a vfork child calling hooks then _exit, one calling
 *                          hooks then exec'ing `spawned`, a posix_spawn of `spawned`: the
 *                          parent's ledger (every figure) is unchanged by them.
 *     fork tree LEVELS FANOUT CALLS
 *                          every process forks FANOUT children (down to LEVELS below the root),
 *                          then all make CALLS hooked calls at once, then exit: run.py checks
 *                          the one shared log line by line against the journal.
 *
 * The hammer threads map inside their own PROT_NONE reservation (MAP_FIXED_NOREPLACE into
 * holes they made), so their mappings never reuse each other's addresses: a child's check is
 * about fork, not about threads racing over a recycled range (threads.c covers that).
 */
#include "hostile.h"

#include <spawn.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

extern char **environ;

static char helper[4096]; /* the `spawned` program next to this one */
static int sem, shm;      /* sem 0: value 2, the hammer threads' P/V; 1: children's */

static void find_helper(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    int dir = slash ? (int)(slash - argv0 + 1) : 0;
    int linked = strlen(argv0) > 7 && strcmp(argv0 + strlen(argv0) - 7, ".linked") == 0;
    snprintf(helper, sizeof helper, "%.*sspawned%s", dir, argv0, linked ? ".linked" : "");
}

/* ---- storm ------------------------------------------------------------------------------ */

#define HAMMERS 4
#define SLOTS 16
#define SLOT_PAGES 4 /* a slot maps 1..3 pages; the 4th stays a PROT_NONE separator */

enum { FREE, MAPPING, MAPPED, UNMAPPING };
static struct {
    char *reserve; /* SLOTS * SLOT_PAGES pages, PROT_NONE, mapped at start */
    struct {
        _Atomic int state;
        size_t pages;
    } slot[SLOTS];
} arena[HAMMERS];
static double deadline;
static int have_shim;
static char *stable; /* mapped by main before anything starts */

static void *hammer(void *arg)
{
    int k = (int)(uintptr_t)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 3);
    unsigned long rounds = 0;
    while (hz_now() < deadline) {
        int i = (int)(hz_rand(&seed) % SLOTS);
        char *at = arena[k].reserve + PG(i * SLOT_PAGES);
        if (atomic_load(&arena[k].slot[i].state) == MAPPED) {
            atomic_store(&arena[k].slot[i].state, UNMAPPING);
            MUST(COUNTED(MUNMAP, munmap(at, PG(arena[k].slot[i].pages))) == 0);
            atomic_store(&arena[k].slot[i].state, FREE);
        } else {
            size_t n = 1 + hz_rand(&seed) % (SLOT_PAGES - 1);
            atomic_store(&arena[k].slot[i].state, MAPPING);
            /* Replaces the reservation the first time, fills a hole afterwards. */
            int flags = MAP_PRIVATE | MAP_ANONYMOUS |
                        (arena[k].slot[i].pages ? MAP_FIXED_NOREPLACE : MAP_FIXED);
            char *p = COUNTED(MMAP, mmap(at, PG(n), PROT_READ | PROT_WRITE, flags, -1, 0));
            if (p == MAP_FAILED) { /* the hole was taken by someone else's mapping */
                EXPECT(errno == EEXIST, "mmap MAP_FIXED_NOREPLACE: %s", hz_errname(errno));
                atomic_store(&arena[k].slot[i].state, MAPPING); /* never touch it again */
                continue;
            }
            MUST(p == at);
            p[0] = 1;
            arena[k].slot[i].pages = n;
            atomic_store(&arena[k].slot[i].state, MAPPED);
        }
        struct sembuf down = {0, -1, SEM_UNDO}, up = {0, 1, SEM_UNDO};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &up, 1))) == 0);
        if (++rounds % 16 == 0) {
            char *a = COUNTED(SHMAT, shmat(shm, NULL, 0));
            MUST(a != (void *)-1);
            MUST(COUNTED(SHMDT, shmdt(a)) == 0);
        }
    }
    hz_publish();
    return NULL;
}

/* In a fork child: what it inherited, then its own calls, against the kernel. */
static void storm_child(void)
{
    const char *d;
    hz_forget_parent_counts();
    if (have_shim) {
        hz_kernel_load();
        EXPECT(!(d = hz_disagreement_loaded(stable, PG(3), 1)), "inherited stable mapping: %s",
               d);
        for (int k = 0; k < HAMMERS; k++)
            for (int i = 0; i < SLOTS; i++) {
                char *at = arena[k].reserve + PG(i * SLOT_PAGES);
                int state = atomic_load(&arena[k].slot[i].state);
                shmtrace_mapping m;
                if (state == MAPPED) {
                    size_t n = arena[k].slot[i].pages;
                    EXPECT(!(d = hz_disagreement_loaded(at, PG(n), 1)),
                           "thread %d slot %d, mapped when the parent forked: %s", k, i, d);
                    EXPECT(!(d = hz_exact_mapping(at, PG(n), SHMTRACE_MAPPING_ANONYMOUS, -1)),
                           "thread %d slot %d, mapped when the parent forked: %s", k, i, d);
                } else if (state == FREE && arena[k].slot[i].pages &&
                           hz_api.mapping_at(at, &m) == SHMTRACE_OK) {
                    /* The hole may hold another thread's mapping (a shmat the kernel placed
                     * there): whatever the ledger holds must be the kernel's, since a release
                     * keeps the ledger locked across its call, so fork never splits one. */
                    size_t len = (size_t)(m.end - m.start);
                    char kv[192], lv[192];
                    if ((d = hz_disagreement_loaded((void *)m.start, len, 1)))
                        FAIL("thread %d slot %d, unmapped when the parent forked (%zu pages): "
                             "%s; kernel %s, ledger %s", k, i, arena[k].slot[i].pages, d,
                             mapview_describe(mapview_kernel_at((uintptr_t)at), kv, sizeof kv),
                             mapview_describe(hz_ledger_at((uintptr_t)at), lv, sizeof lv));
                }
            }
    }
    char *p = COUNTED(MMAP, mmap(NULL, PG(3), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(p != MAP_FAILED);
    char *q = COUNTED(MREMAP, mremap(p, PG(3), PG(6), MREMAP_MAYMOVE));
    MUST(q != MAP_FAILED);
    MUST(COUNTED(MUNMAP, munmap(q + PG(2), PG(1))) == 0);
    char *a = COUNTED(SHMAT, shmat(shm, NULL, 0));
    MUST(a != (void *)-1);
    struct sembuf up = {1, 1, 0}, down = {1, -1, 0};
    MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &up, 1))) == 0);
    MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
    if (have_shim) {
        hz_kernel_load();
        EXPECT(!(d = hz_disagreement_loaded(q, PG(6), 0)), "child's own mapping: %s", d);
        EXPECT(!(d = hz_disagreement_loaded(a, PG(2), 0)), "child's own attachment: %s", d);
        EXPECT(!(d = hz_exact_mapping(a, PG(2), SHMTRACE_MAPPING_SHM, shm)),
               "child's own attachment: %s", d);
    }
    MUST(COUNTED(MUNMAP, munmap(q, PG(6))) == 0);
    MUST(COUNTED(SHMDT, shmdt(a)) == 0);
    hz_publish();
    exit(hz_status());
}

/* Calls in a vfork child land in the parent's memory: counted here, published by the parent. */
static unsigned long vf_calls[NFN], vf_enters[NFN];

static volatile int vf_exec; /* the vfork child execs `spawned` (else _exit) */

static pid_t vfork_child(int exec_helper)
{
    char shm_arg[16], sem_arg[16];
    char *args[] = {helper, shm_arg, sem_arg, NULL};
    snprintf(shm_arg, sizeof shm_arg, "%d", shm);
    snprintf(sem_arg, sizeof sem_arg, "%d", sem);
    memset(vf_calls, 0, sizeof vf_calls);
    memset(vf_enters, 0, sizeof vf_enters);
    vf_exec = exec_helper;
    pid_t pid = vfork();
    if (pid == 0) {
        void *p = mmap(NULL, PG(1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        vf_calls[SHMTRACE_CALL_MMAP]++;
        if (p != MAP_FAILED) {
            munmap(p, PG(1));
            vf_calls[SHMTRACE_CALL_MUNMAP]++;
        }
        semctl(sem, 0, GETVAL);
        vf_calls[SHMTRACE_CALL_SEMCTL]++;
        if (vf_exec)
            execve(helper, args, environ);
        _exit(vf_exec ? 127 : 0);
    }
    MUST(pid > 0);
    hz_publish_counts(pid, pid, vf_calls, vf_enters);
    return pid;
}

static pid_t spawn_helper(void)
{
    char shm_arg[16], sem_arg[16];
    char *args[] = {helper, shm_arg, sem_arg, NULL};
    pid_t pid;
    snprintf(shm_arg, sizeof shm_arg, "%d", shm);
    snprintf(sem_arg, sizeof sem_arg, "%d", sem);
    int err = posix_spawn(&pid, helper, NULL, NULL, args, environ);
    if (err) {
        errno = err;
        MUST(!"posix_spawn");
    }
    return pid;
}

static void expect_exit0_until(pid_t pid, const char *what, double deadline)
{
    int status = hz_wait_child_until(pid, deadline);
    if (status != -1)
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "%s child %d: wait status 0x%x", what, (int)pid, status);
}

static void expect_exit0(pid_t pid, const char *what)
{
    expect_exit0_until(pid, what, hz_now() + 10);
}

static int storm(double seconds)
{
    pthread_t t[HAMMERS];
    int forks = 0, vforks = 0, spawns = 0;
    have_shim = hz_api_load();
    MUST(have_shim);
    stable = COUNTED(MMAP, mmap(NULL, PG(3), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(stable != MAP_FAILED);
    for (int k = 0; k < HAMMERS; k++) {
        arena[k].reserve = COUNTED(MMAP, mmap(NULL, PG(SLOTS * SLOT_PAGES), PROT_NONE,
                                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                                              0));
        MUST(arena[k].reserve != MAP_FAILED);
    }
    MUST((sem = hz_semget(2)) >= 0);
    MUST(COUNTED(SEMCTL, semctl(sem, 0, SETVAL, (union semun){.val = 2})) == 0);
    MUST((shm = hz_shmget(PG(2))) >= 0);

    deadline = hz_now() + seconds;
    for (int k = 0; k < HAMMERS; k++)
        MUST(pthread_create(&t[k], NULL, hammer, (void *)(uintptr_t)k) == 0);
    for (int round = 0; hz_now() < deadline; round++) {
        pid_t pid;
        if (round % 8 == 3) {
            pid = vfork_child(round % 16 == 3);
            vforks++;
            hz_say("CHILD %d %s\n", (int)pid, round % 16 == 3 ? "vfork-exec" : "vfork-exit");
            expect_exit0(pid, "vfork");
        } else if (round % 8 == 7) {
            pid = spawn_helper();
            spawns++;
            hz_say("CHILD %d spawn\n", (int)pid);
            expect_exit0(pid, "posix_spawn");
        } else {
            pid = fork();
            MUST(pid >= 0);
            if (pid == 0)
                storm_child();
            forks++;
            int status = hz_wait_child(pid, 10);
            if (status == -1)
                break; /* hung: left for run.py to inspect */
            EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "fork child %d: wait status 0x%x", (int)pid, status);
        }
        if (atomic_load(&hz_failures))
            break;
    }
    for (int k = 0; k < HAMMERS; k++)
        MUST(pthread_join(t[k], NULL) == 0);
    hz_note("forks %d vforks %d spawns %d", forks, vforks, spawns);

    /* The parent's own ledger after all that. */
    const char *d;
    hz_kernel_load();
    EXPECT(!(d = hz_disagreement_loaded(stable, PG(3), 0)), "parent's stable mapping: %s", d);
    for (int k = 0; k < HAMMERS; k++)
        EXPECT(!(d = hz_disagreement_loaded(arena[k].reserve, PG(SLOTS * SLOT_PAGES), 0)),
               "parent, thread %d's arena: %s", k, d);
    shmtrace_stats s = hz_stats();
    for (int i = 0; i < NFN; i++) {
        unsigned long own = atomic_load(&hz_total_calls[i]) + hz_calls[i];
        EXPECT(s.calls[i] == own, "parent: stats.calls[%s] %lu, the parent made %lu",
               hz_fn_names[i], (unsigned long)s.calls[i], own);
    }
    for (int k = 0; k < HAMMERS; k++)
        MUST(COUNTED(MUNMAP, munmap(arena[k].reserve, PG(SLOTS * SLOT_PAGES))) == 0);
    MUST(COUNTED(MUNMAP, munmap(stable, PG(3))) == 0);
    MUST(hz_rm_shm(shm) == 0);
    MUST(hz_rm_sem(sem) == 0);
    EXPECT_EQ("parent: shmtrace_leak_count() at the end", hz_api.leak_count(), 0);
    hz_publish();
    return hz_status();
}

/* ---- spawn (single-threaded, exact) ------------------------------------------------------ */

/* NULL if equal, else the fields that differ (static buffer). */
static const char *stats_diff(const shmtrace_stats *a, const shmtrace_stats *b)
{
    static char msg[512];
    size_t n = 0;
    msg[0] = '\0';
#define F(field, name)                                                                      \
    if (a->field != b->field && n < sizeof msg - 80)                                        \
        n += (size_t)snprintf(msg + n, sizeof msg - n, " %s %lu -> %lu", name,               \
                              (unsigned long)a->field, (unsigned long)b->field);
    F(mappings, "mappings") F(bytes_mapped, "bytes_mapped")
    F(peak_bytes_mapped, "peak_bytes_mapped") F(attachments, "attachments")
    F(segments, "segments") F(semaphore_sets, "semaphore_sets")
    F(unknown_unmaps, "unknown_unmaps") F(untracked, "untracked")
    F(internal_failures, "internal_failures") F(shim_heap_bytes, "shim_heap_bytes")
    for (int i = 0; i < NFN; i++) {
        F(calls[i], hz_fn_names[i])
    }
#undef F
    return n ? msg : NULL;
}

static int spawn(void)
{
    MUST(hz_api_load());
    MUST((sem = hz_semget(2)) >= 0);
    MUST((shm = hz_shmget(PG(2))) >= 0);
    char *mine =
        COUNTED(MMAP, mmap(NULL, PG(2), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(mine != MAP_FAILED);
    long leaks = (long)hz_api.leak_count();
    const char *what[] = {"a vfork child calling hooks, then _exit",
                          "a vfork child calling hooks, then exec", "posix_spawn"};
    for (int i = 0; i < 3; i++) {
        shmtrace_stats before = hz_stats(), after;
        pid_t pid = i < 2 ? vfork_child(i) : spawn_helper();
        expect_exit0(pid, what[i]);
        after = hz_stats();
        const char *diff = stats_diff(&before, &after);
        EXPECT(!diff, "%s changed the parent's ledger:%s", what[i], diff);
        EXPECT_EQ("shmtrace_leak_count()", hz_api.leak_count(), leaks);
        hz_say("CHILD %d %s\n", (int)pid,
               i == 0 ? "vfork-exit" : i == 1 ? "vfork-exec" : "spawn");
    }
    const char *d = hz_disagreement(mine, PG(2), 0);
    EXPECT(!d, "parent's mapping after the children: %s", d);
    MUST(COUNTED(MUNMAP, munmap(mine, PG(2))) == 0);
    MUST(hz_rm_shm(shm) == 0);
    MUST(hz_rm_sem(sem) == 0);
    hz_publish();
    return hz_status();
}

/* ---- tree -------------------------------------------------------------------------------- */

static int levels, fanout, calls_each;

static void tree_work(int depth)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(getpid() + depth);
    int done = 0;
    while (done < calls_each) {
        size_t n = 1 + hz_rand(&seed) % 3;
        char *p = COUNTED(MMAP, mmap(NULL, PG(n), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        MUST(p != MAP_FAILED);
        char *q = COUNTED(MREMAP, mremap(p, PG(n), PG(5), MREMAP_MAYMOVE));
        MUST(q != MAP_FAILED);
        MUST(COUNTED(MUNMAP, munmap(q, PG(5))) == 0);
        struct sembuf down = {0, -1, SEM_UNDO}, up = {0, 1, SEM_UNDO};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
        struct timespec wait = {1, 0};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMTIMEDOP, semtimedop(sem, &up, 1, &wait))) ==
             0);
        char *a = COUNTED(SHMAT, shmat(shm, NULL, 0));
        MUST(a != (void *)-1);
        MUST(COUNTED(SHMDT, shmdt(a)) == 0);
        MUST(COUNTED(SEMCTL, semctl(sem, 0, GETVAL)) >= 0);
        struct shmid_ds ds;
        MUST(COUNTED(SHMCTL, shmctl(shm, IPC_STAT, &ds)) == 0);
        char *s = COUNTED(MMAP64, mmap64(NULL, PG(1), PROT_READ, MAP_SHARED | MAP_ANONYMOUS,
                                         -1, 0));
        MUST(s != MAP_FAILED);
        MUST(COUNTED(MUNMAP, munmap(s, PG(1))) == 0);
        done += 11;
    }
}

static void tree_node(int depth)
{
    pid_t kids[64];
    int n = 0;
    hz_note("tree %d parent %d", (int)getpid(), depth ? (int)getppid() : 0);
    if (depth < levels)
        for (int i = 0; i < fanout && i < 64; i++) {
            pid_t pid = fork();
            MUST(pid >= 0);
            if (pid == 0) {
                hz_forget_parent_counts();
                tree_node(depth + 1);
                /* not reached */
            }
            kids[n++] = pid;
        }
    tree_work(depth);
    if (depth > 0)
        hz_publish(); /* the root publishes once it has removed the segment and set */
    /* One deadline for all: a hung subtree costs its parent 20 s, not 20 s per child. */
    double deadline = hz_now() + 20 - 2 * depth;
    for (int i = 0; i < n; i++)
        expect_exit0_until(kids[i], "tree", deadline);
    if (depth > 0)
        exit(hz_status()); /* through exit: atexit handlers, then the shim's report */
}

static int tree(void)
{
    MUST((sem = hz_semget(1)) >= 0);
    MUST(COUNTED(SEMCTL, semctl(sem, 0, SETVAL, (union semun){.val = 3})) == 0);
    MUST((shm = hz_shmget(PG(2))) >= 0);
    tree_node(0);
    MUST(hz_rm_shm(shm) == 0);
    MUST(hz_rm_sem(sem) == 0);
    hz_publish();
    return hz_status();
}

int main(int argc, char **argv)
{
    hz_init("fork");
    find_helper(argv[0]);
    if (argc == 3 && strcmp(argv[1], "storm") == 0)
        return storm(atof(argv[2]));
    if (argc == 2 && strcmp(argv[1], "spawn") == 0)
        return spawn();
    if (argc == 5 && strcmp(argv[1], "tree") == 0) {
        levels = atoi(argv[2]);
        fanout = atoi(argv[3]);
        calls_each = atoi(argv[4]);
        return tree();
    }
    fprintf(stderr, "usage: fork storm SECONDS | fork spawn | fork tree LEVELS FANOUT CALLS\n");
    return 2;
}
