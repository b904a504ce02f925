/*
 * alloc: a foreign allocator (jemalloc, tcmalloc: run.py preloads it before or after the
 * shim) under load from several threads allocating and freeing large blocks, while other
 * threads call every hook directly (and allocate between and during their calls).
 *
 *     alloc MODE SECONDS [--mmap-invisible]
 *
 * MODE `threads`: only that; `fork`: the main thread also forks repeatedly meanwhile (and half
 * the allocating threads are short-lived, replaced every 20 ms), and each child allocates,
 * calls hooks and checks its ledger (a child that does not end within 8 s is reported
 * `HUNG pid`).
 *
 * Afterwards: every region the direct threads left mapped is in the ledger with its exact
 * range (shmtrace_mapping_at) and agrees with /proc/self/maps page by page; the ledger counts
 * exactly the SysV calls the program made and at least its mmap-family calls (the allocator
 * adds its own); nothing failed or went untracked inside the shim. With --mmap-invisible (an
 * allocator that defines mmap itself is ahead of the shim), the program's mmap-family calls
 * must be invisible instead (what run.py documents) and everything else still complete.
 *
 * Without the shim (HOSTILE_NATIVE=1) the same load runs with no ledger checks: the baseline.
 *
 * Built with -DOWN_MALLOC (the program `mymalloc`), the program defines malloc itself
 * (ownmalloc.h: mmap through the PLT with its lock held): then the shim must count exactly the
 * program's calls plus the allocator's, and never call malloc from inside itself.
 */
#include "hostile.h"
#ifdef OWN_MALLOC
#include <link.h>
#include "ownmalloc.h"
#endif

#define ALLOCATORS 4
#define DIRECT 2

static double deadline;
static int sem;    /* 0: a mutex of the direct threads, 1: stays 0 (timed waits), 2: children */
static int shared; /* a segment every direct thread leaves attached */
static int have_shim, invisible;
static char *stable; /* mapped before anything starts, for the children's inherited check */

struct left {
    char *map;    /* 3 pages, anonymous, private */
    char *moved;  /* 5 pages, grown by mremap from 2 */
    char *file;   /* 2 pages, mmap64 MAP_SHARED of a file */
    char *attach; /* the shared segment, 8 pages */
};
static struct left left[DIRECT];

static void touch(char *p, size_t n)
{
    if (n) {
        p[0] = 1;
        p[n - 1] = 1;
    }
}

/* Allocates and frees large blocks (and bursts of small ones) until `until`. */
static void alloc_load(uint64_t seed, double until)
{
    static const size_t sizes[] = {64 << 10, 200 << 10, 1 << 20, 3 << 20, 300 << 10, 9 << 20};
    void *live[8] = {0};
    size_t size[8] = {0};
    unsigned long rounds = 0;
    while (hz_now() < until) {
        int i = (int)(hz_rand(&seed) % 8);
        if (live[i]) {
            if (hz_rand(&seed) % 4 == 0 && size[i] < (16 << 20)) {
                void *bigger = realloc(live[i], size[i] * 2);
                MUST(bigger);
                live[i] = bigger;
                size[i] *= 2;
                touch(live[i], size[i]);
            } else {
                free(live[i]);
                live[i] = NULL;
            }
        } else {
            size[i] = sizes[hz_rand(&seed) % (sizeof sizes / sizeof sizes[0])] +
                      hz_rand(&seed) % 4096;
            live[i] = hz_rand(&seed) % 3 ? malloc(size[i]) : calloc(1, size[i]);
            MUST(live[i]);
            touch(live[i], size[i]);
        }
        if (++rounds % 32 == 0) { /* small blocks too: thread caches, slabs */
            void *small[256];
            for (int j = 0; j < 256; j++)
                MUST((small[j] = malloc(16 + (size_t)j * 8)));
            for (int j = 0; j < 256; j++)
                free(small[j]);
            void *aligned = NULL;
            MUST(posix_memalign(&aligned, 1 << 16, 1 << 20) == 0);
            touch(aligned, 1 << 20);
            free(aligned);
        }
    }
    for (int i = 0; i < 8; i++)
        free(live[i]);
}

static void *allocator(void *arg)
{
    alloc_load(0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1), deadline);
    hz_publish(); /* no direct calls: all zero */
    return NULL;
}

/* Threads that live 20 ms: an allocator sets up and tears down per-thread state (arena
 * choice, thread caches, metadata) under its global locks, mapping memory as it does. */
static void *short_lived(void *arg)
{
    alloc_load((uintptr_t)arg * 0x2545f4914f6cdd1dull + 1, hz_now() + 0.02);
    return NULL;
}

static void *churner(void *arg)
{
    uintptr_t n = (uintptr_t)arg << 32;
    while (hz_now() < deadline) {
        pthread_t t;
        MUST(pthread_create(&t, NULL, short_lived, (void *)++n) == 0);
        MUST(pthread_join(t, NULL) == 0);
    }
    return NULL;
}

static void *direct(void *arg)
{
    int k = (int)(uintptr_t)arg;
    uint64_t seed = 0x2545f4914f6cdd1dull * (uint64_t)(k + 7);
    unsigned long rounds = 0;
    int fd;
    while (hz_now() < deadline) {
        size_t n = 1 + hz_rand(&seed) % 16;
        char *p = COUNTED(MMAP, mmap(NULL, PG(n), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        MUST(p != MAP_FAILED);
        touch(p, PG(n));
        void *blk = malloc((256 << 10) + hz_rand(&seed) % (1 << 20));
        MUST(blk);
        touch(blk, 256 << 10);
        char *q = COUNTED(MREMAP, mremap(p, PG(n), PG(2 * n), MREMAP_MAYMOVE));
        MUST(q != MAP_FAILED);
        touch(q, PG(2 * n));
        free(blk);
        MUST(COUNTED(MUNMAP, munmap(q, PG(2 * n))) == 0);
        char *r = COUNTED(MMAP64, mmap64(NULL, PG(1), PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_ANONYMOUS, -1, 0));
        MUST(r != MAP_FAILED);
        MUST(COUNTED(MUNMAP, munmap(r, PG(1))) == 0);

        int id = hz_shmget(PG(4));
        MUST(id >= 0);
        char *a = COUNTED(SHMAT, shmat(id, NULL, 0));
        MUST(a != (void *)-1);
        touch(a, PG(4));
        struct shmid_ds ds;
        MUST(COUNTED(SHMCTL, shmctl(id, IPC_STAT, &ds)) == 0);
        /* 2 while a fork child holds a copy of the attachment */
        EXPECT(ds.shm_nattch >= 1, "shm_nattch of an attached segment: %lu",
               (unsigned long)ds.shm_nattch);
        MUST(COUNTED(SHMDT, shmdt(a)) == 0);
        MUST(hz_rm_shm(id) == 0);

        struct sembuf down = {0, -1, SEM_UNDO}, up = {0, 1, SEM_UNDO};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
        void *inside = malloc(1 << 20); /* the allocator while holding the semaphore */
        MUST(inside);
        touch(inside, 1 << 20);
        free(inside);
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &up, 1))) == 0);
        if (++rounds % 8 == 0) {
            struct sembuf wait1 = {1, -1, 0};
            struct timespec brief = {0, 100000};
            int ret =
                NO_EINTR(COUNTED_BLOCKING(SEMTIMEDOP, semtimedop(sem, &wait1, 1, &brief)));
            EXPECT(ret == -1 && errno == EAGAIN, "semtimedop on a zero semaphore: %d %s",
                   ret, hz_errname(errno));
        }
        int v = COUNTED(SEMCTL, semctl(sem, 1, GETVAL));
        EXPECT_EQ("semaphore 1", v, 0);
    }

    /* Left mapped on purpose, checked by main. */
    left[k].map = COUNTED(MMAP, mmap(NULL, PG(3), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(left[k].map != MAP_FAILED);
    char *two = COUNTED(MMAP, mmap(NULL, PG(2), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(two != MAP_FAILED);
    left[k].moved = COUNTED(MREMAP, mremap(two, PG(2), PG(5), MREMAP_MAYMOVE));
    MUST(left[k].moved != MAP_FAILED);
    char path[] = "/tmp/shmtrace-hostile-alloc.XXXXXX";
    MUST((fd = mkstemp(path)) >= 0);
    unlink(path);
    MUST(ftruncate(fd, PG(2)) == 0);
    left[k].file =
        COUNTED(MMAP64, mmap64(NULL, PG(2), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    MUST(left[k].file != MAP_FAILED);
    close(fd);
    left[k].attach = COUNTED(SHMAT, shmat(shared, NULL, 0));
    MUST(left[k].attach != (void *)-1);
    hz_publish();
    return NULL;
}

/* A forked child of the multithreaded parent: allocate, call hooks, check its own ledger. */
static void child(void)
{
    hz_forget_parent_counts();
    void *big = malloc(3 << 20);
    MUST(big);
    touch(big, 3 << 20);
    char *p = COUNTED(MMAP, mmap(NULL, PG(4), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(p != MAP_FAILED);
    char *a = COUNTED(SHMAT, shmat(shared, NULL, SHM_RDONLY));
    MUST(a != (void *)-1);
    struct sembuf up = {2, 1, 0}, down = {2, -1, 0};
    MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &up, 1))) == 0);
    MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
    free(big);
    if (have_shim) {
        const char *d;
        hz_kernel_load();
        if (!invisible) {
            EXPECT(!(d = hz_exact_mapping(p, PG(4), SHMTRACE_MAPPING_ANONYMOUS, -1)),
                   "child: its mmap: %s", d);
            EXPECT(!(d = hz_disagreement_loaded(p, PG(4), 0)), "child: its mmap: %s", d);
            EXPECT(!(d = hz_disagreement_loaded(stable, PG(2), 1)),
                   "child: the parent's mapping: %s", d);
        }
        EXPECT(!(d = hz_exact_mapping(a, PG(8), SHMTRACE_MAPPING_SHM, shared)),
               "child: its attachment: %s", d);
        EXPECT(!(d = hz_disagreement_loaded(a, PG(8), 0)), "child: its attachment: %s", d);
    }
    MUST(COUNTED(MUNMAP, munmap(p, PG(4))) == 0);
    MUST(COUNTED(SHMDT, shmdt(a)) == 0);
    hz_publish();
    exit(hz_status());
}

int main(int argc, char **argv)
{
    pthread_t t[ALLOCATORS + DIRECT];
    int forks = 0;
    #ifdef OWN_MALLOC
    hz_init("mymalloc");
#else
    hz_init("alloc");
#endif
    if (argc < 3 || (strcmp(argv[1], "threads") && strcmp(argv[1], "fork"))) {
        fprintf(stderr, "usage: alloc threads|fork SECONDS [--mmap-invisible]\n");
        return 2;
    }
    invisible = argc > 3 && strcmp(argv[3], "--mmap-invisible") == 0;
    have_shim = hz_api_load();
    if (!have_shim && !getenv("HOSTILE_NATIVE")) {
        FAIL("the shim is not loaded (no shmtrace_get_stats)");
        return 1;
    }
    shmtrace_stats s0 = hz_stats();
#ifdef OWN_MALLOC
    unsigned long om0[NFN], from_shim0 = atomic_load(&own_from_shim);
    om_locate_shim();
    if (have_shim && !om_shim_hi)
        FAIL("cannot find libshmtrace.so's code");
    for (int i = 0; i < NFN; i++)
        om0[i] = atomic_load(&om_calls[i]);
#endif

    stable = COUNTED(MMAP, mmap(NULL, PG(2), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(stable != MAP_FAILED);
    MUST((sem = hz_semget(3)) >= 0);
    unsigned short init[3] = {1, 0, 0};
    MUST(COUNTED(SEMCTL, semctl(sem, 0, SETALL, (union semun){.array = init})) == 0);
    MUST((shared = hz_shmget(PG(8))) >= 0);

    deadline = hz_now() + atof(argv[2]);
    /* In fork mode half the allocating threads come and go. */
    int churn = strcmp(argv[1], "fork") == 0 ? ALLOCATORS / 2 : 0;
    for (int i = 0; i < ALLOCATORS + DIRECT; i++)
        MUST(pthread_create(&t[i], NULL,
                            i < churn ? churner : i < ALLOCATORS ? allocator : direct,
                            (void *)(uintptr_t)(i < ALLOCATORS ? i : i - ALLOCATORS)) == 0);
    if (strcmp(argv[1], "fork") == 0) {
        while (hz_now() < deadline) {
            pid_t pid = fork();
            MUST(pid >= 0);
            if (pid == 0)
                child();
            int status = hz_wait_child(pid, 8);
            if (status == -1)
                break; /* hung: left for run.py to inspect */
            EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "child %d: wait status 0x%x", (int)pid, status);
            forks++;
            usleep(5000);
        }
        hz_note("forks %d", forks);
    } else {
        while (hz_now() < deadline)
            usleep(20000);
    }
    for (int i = 0; i < ALLOCATORS + DIRECT; i++)
        MUST(pthread_join(t[i], NULL) == 0);

    if (have_shim) {
        const char *d;
        shmtrace_stats s1 = hz_stats();
        unsigned long own[NFN];
        for (int i = 0; i < NFN; i++)
            own[i] = atomic_load(&hz_total_calls[i]) + hz_calls[i];
#ifdef OWN_MALLOC
        /* The shim sees the allocator's calls too, exactly. */
        for (int i = 0; i < NFN; i++) {
            unsigned long mine = atomic_load(&om_calls[i]) - om0[i];
            if (mine)
                hz_note("ownmalloc %s %lu", hz_fn_names[i], mine);
            own[i] += mine;
        }
        EXPECT(atomic_load(&own_from_shim) == from_shim0,
               "the shim called malloc/free %lu times from its own code since main began",
               atomic_load(&own_from_shim) - from_shim0);
#endif
        hz_kernel_load();
        for (int k = 0; k < DIRECT; k++) {
            struct {
                const char *what;
                char *at;
                size_t len;
                int kind, shmid, mmap_family;
            } regions[] = {
                {"mmap", left[k].map, PG(3), SHMTRACE_MAPPING_ANONYMOUS, -1, 1},
                {"mremap", left[k].moved, PG(5), SHMTRACE_MAPPING_ANONYMOUS, -1, 1},
                {"mmap64 of a file", left[k].file, PG(2), SHMTRACE_MAPPING_FILE, -1, 1},
                {"shmat", left[k].attach, PG(8), SHMTRACE_MAPPING_SHM, shared, 0},
            };
            for (size_t i = 0; i < sizeof regions / sizeof regions[0]; i++) {
                if (invisible && regions[i].mmap_family) {
                    shmtrace_mapping m;
                    EXPECT(hz_api.mapping_at(regions[i].at, &m) == SHMTRACE_NOT_FOUND,
                           "thread %d's %s: expected invisible, but the ledger has it", k,
                           regions[i].what);
                    continue;
                }
                EXPECT(!(d = hz_exact_mapping(regions[i].at, regions[i].len, regions[i].kind,
                                              regions[i].shmid)),
                       "thread %d's %s left mapped: %s", k, regions[i].what, d);
                EXPECT(!(d = hz_disagreement_loaded(regions[i].at, regions[i].len, 0)),
                       "thread %d's %s left mapped, against /proc/self/maps: %s", k,
                       regions[i].what, d);
            }
        }
        EXPECT_EQ("shmtrace_attachments_of(shared)", hz_api.attachments_of(shared), DIRECT);
        for (int i = 0; i < NFN; i++) {
            unsigned long seen = s1.calls[i] - s0.calls[i];
            int family = i == SHMTRACE_CALL_MMAP || i == SHMTRACE_CALL_MMAP64 ||
                         i == SHMTRACE_CALL_MUNMAP || i == SHMTRACE_CALL_MREMAP;
            if (!family)
                EXPECT(seen == own[i], "stats.calls[%s]: %lu, the program made %lu",
                       hz_fn_names[i], seen, own[i]);
            else if (invisible)
                EXPECT(seen < own[i], "stats.calls[%s]: %lu, the program made %lu: expected "
                       "its calls to be invisible", hz_fn_names[i], seen, own[i]);
            else
#ifdef OWN_MALLOC
                EXPECT(seen == own[i], "stats.calls[%s]: %lu, the program and its malloc made "
                       "%lu", hz_fn_names[i], seen, own[i]);
#else
                EXPECT(seen >= own[i], "stats.calls[%s]: %lu, the program made %lu",
                       hz_fn_names[i], seen, own[i]);
#endif
            if (family)
                hz_note("calls %s seen %lu own %lu", hz_fn_names[i], seen, own[i]);
        }
        EXPECT(s1.internal_failures == 0 && s1.untracked == 0,
               "%lu internal failures, %lu untracked calls",
               (unsigned long)s1.internal_failures, (unsigned long)s1.untracked);
        hz_note("ledger mappings %lu bytes %lu unknown_unmaps %lu", (unsigned long)s1.mappings,
                (unsigned long)s1.bytes_mapped, (unsigned long)s1.unknown_unmaps);
    }

    for (int k = 0; k < DIRECT; k++) {
        MUST(COUNTED(MUNMAP, munmap(left[k].map, PG(3))) == 0);
        MUST(COUNTED(MUNMAP, munmap(left[k].moved, PG(5))) == 0);
        MUST(COUNTED(MUNMAP, munmap(left[k].file, PG(2))) == 0);
        MUST(COUNTED(SHMDT, shmdt(left[k].attach)) == 0);
    }
    MUST(COUNTED(MUNMAP, munmap(stable, PG(2))) == 0);
    MUST(hz_rm_shm(shared) == 0);
    MUST(hz_rm_sem(sem) == 0);
    if (have_shim) {
        shmtrace_stats s2 = hz_stats();
        EXPECT(s2.segments == 0 && s2.semaphore_sets == 0 && s2.attachments == 0,
               "after releasing everything: %lu segments, %lu sets, %lu attachments in the "
               "ledger", (unsigned long)s2.segments, (unsigned long)s2.semaphore_sets,
               (unsigned long)s2.attachments);
    }
    hz_publish();
    return hz_status();
}
