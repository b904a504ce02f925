/*
 * threads: 8 threads call every hook at once for SECONDS (shm cycle, semop P/V on a contended
 * semaphore, semtimedop, semctl, mmap/mmap64/mremap/munmap, MAP_FIXED over their own
 * mappings, failing calls), each counting its own calls (journal, see hostile.h: run.py
 * compares them with the log's records per thread, exactly).
 *
 *     threads SECONDS
 *
 * At the end each thread leaves regions mapped on purpose (a plain mapping, one with a hole,
 * one moved by mremap, a file mapping, an attachment of a removed segment, one split by
 * MAP_FIXED); main then checks every page of them against /proc/self/maps, the ledger's
 * figures (mappings, bytes, attachments, calls per function: exactly what the program did),
 * releases everything and checks the ledger is back where it started.
 */
#include "hostile.h"

#define THREADS 8

static double deadline;
static int sem; /* 0: value 2, taken and given back by everyone; 1 + k: thread k's own */

struct region {
    char *at;
    size_t pages;
    int kind, shmid; /* for hz_exact_mapping; kind -1: not one mapping (hole, split) */
};
#define REGIONS 6
static struct region left[THREADS][REGIONS];
/* Per thread: 1 + 2 + 1 + 1 + 1 + 3 mappings (the hole splits one, MAP_FIXED splits one in
 * three) and 4 + 5 + 7 + 2 + 3 + 5 pages. */
#define LEFT_MAPPINGS 9
#define LEFT_PAGES 26

static void *worker(void *arg)
{
    int k = (int)(uintptr_t)arg;
    uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
    unsigned long rounds = 0;
    char path[] = "/tmp/shmtrace-hostile-threads.XXXXXX";
    int fd;

    while (hz_now() < deadline) {
        rounds++;
        /* shm: the whole cycle */
        int id = hz_shmget(PG(2));
        MUST(id >= 0);
        char *a = COUNTED(SHMAT, shmat(id, NULL, 0));
        MUST(a != (void *)-1);
        a[0] = (char)k;
        struct shmid_ds ds;
        MUST(COUNTED(SHMCTL, shmctl(id, IPC_STAT, &ds)) == 0);
        MUST(COUNTED(SHMDT, shmdt(a)) == 0);
        MUST(hz_rm_shm(id) == 0);

        /* semop: P/V on the shared semaphore (value 2, 8 threads: some block) */
        struct sembuf down = {0, -1, SEM_UNDO}, up = {0, 1, SEM_UNDO};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &down, 1))) == 0);
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMOP, semop(sem, &up, 1))) == 0);

        /* semtimedop: V then P on our own semaphore; sometimes a wait that times out */
        struct sembuf mine_up = {(unsigned short)(1 + k), 1, 0},
                      mine_down = {(unsigned short)(1 + k), -1, 0};
        struct timespec wait = {0, 50000};
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMTIMEDOP, semtimedop(sem, &mine_up, 1, &wait))) ==
             0);
        MUST(NO_EINTR(COUNTED_BLOCKING(SEMTIMEDOP, semtimedop(sem, &mine_down, 1, &wait))) ==
             0);
        if (rounds % 16 == 0) {
            int r =
                NO_EINTR(COUNTED_BLOCKING(SEMTIMEDOP, semtimedop(sem, &mine_down, 1, &wait)));
            EXPECT(r == -1 && errno == EAGAIN, "semtimedop on 0: %d %s", r, hz_errname(errno));
        }

        /* semget: a set of its own, now and then */
        if (rounds % 8 == 0) {
            int set = hz_semget(2);
            MUST(set >= 0);
            MUST(hz_rm_sem(set) == 0);
        }

        /* semctl */
        EXPECT_EQ("own semaphore", COUNTED(SEMCTL, semctl(sem, 1 + k, GETVAL)), 0);
        if (rounds % 4 == 0)
            MUST(COUNTED(SEMCTL, semctl(sem, 1 + k, SETVAL, (union semun){.val = 0})) == 0);

        /* mmap family */
        size_t n = 2 + hz_rand(&seed) % 8;
        char *p = COUNTED(MMAP, mmap(NULL, PG(n), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        MUST(p != MAP_FAILED);
        p[0] = 1;
        char *q = COUNTED(MREMAP, mremap(p, PG(n), PG(2 * n), MREMAP_MAYMOVE));
        MUST(q != MAP_FAILED);
        q[PG(2 * n) - 1] = 1;
        MUST(COUNTED(MREMAP, mremap(q, PG(2 * n), PG(n), 0)) == q);
        char *f = COUNTED(MMAP, mmap(q + PG(1), PG(1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
                                     MAP_FIXED, -1, 0));
        MUST(f == q + PG(1));
        MUST(COUNTED(MUNMAP, munmap(q, PG(1))) == 0);
        MUST(COUNTED(MUNMAP, munmap(q + PG(1), PG(n - 1))) == 0);
        char *s = COUNTED(MMAP64, mmap64(NULL, PG(1), PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_ANONYMOUS, -1, 0));
        MUST(s != MAP_FAILED);
        MUST(COUNTED(MUNMAP, munmap(s, PG(1))) == 0);

        /* failing calls are calls too */
        EXPECT(COUNTED(MUNMAP, munmap(s + 1, PG(1))) == -1 && errno == EINVAL,
               "munmap of a misaligned address");
        EXPECT(COUNTED(SHMAT, shmat(-1, NULL, 0)) == (void *)-1 && errno == EINVAL,
               "shmat(-1)");
    }

    /* What this thread leaves mapped, for main to check. */
    struct region *l = left[k];
    l[0] = (struct region){NULL, 4, SHMTRACE_MAPPING_ANONYMOUS, -1};
    l[0].at = COUNTED(MMAP, mmap(NULL, PG(4), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(l[0].at != MAP_FAILED);

    l[1] = (struct region){NULL, 6, -1, -1}; /* a hole at page 2 */
    l[1].at = COUNTED(MMAP, mmap(NULL, PG(6), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(l[1].at != MAP_FAILED);
    MUST(COUNTED(MUNMAP, munmap(l[1].at + PG(2), PG(1))) == 0);

    l[2] = (struct region){NULL, 7, SHMTRACE_MAPPING_ANONYMOUS, -1};
    char *small = COUNTED(MMAP, mmap(NULL, PG(3), PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(small != MAP_FAILED);
    l[2].at = COUNTED(MREMAP, mremap(small, PG(3), PG(7), MREMAP_MAYMOVE));
    MUST(l[2].at != MAP_FAILED);

    l[3] = (struct region){NULL, 2, SHMTRACE_MAPPING_FILE, -1};
    MUST((fd = mkstemp(path)) >= 0);
    unlink(path);
    MUST(ftruncate(fd, PG(2)) == 0);
    l[3].at = COUNTED(MMAP64, mmap64(NULL, PG(2), PROT_READ, MAP_SHARED, fd, 0));
    MUST(l[3].at != MAP_FAILED);
    close(fd);

    int id = hz_shmget(PG(3));
    MUST(id >= 0);
    l[4] = (struct region){NULL, 3, SHMTRACE_MAPPING_SHM, id};
    l[4].at = COUNTED(SHMAT, shmat(id, NULL, 0));
    MUST(l[4].at != (void *)-1);
    MUST(hz_rm_shm(id) == 0); /* marked: destroyed at the last detach */

    l[5] = (struct region){NULL, 5, -1, -1}; /* pages 1-2 replaced by MAP_FIXED */
    l[5].at = COUNTED(MMAP, mmap(NULL, PG(5), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(l[5].at != MAP_FAILED);
    MUST(COUNTED(MMAP, mmap(l[5].at + PG(1), PG(2), PROT_READ,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0)) == l[5].at + PG(1));
    hz_note("thread %d: %lu rounds", k, rounds);
    hz_publish();
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[THREADS];
    const char *d;
    hz_init("threads");
    if (argc != 2) {
        fprintf(stderr, "usage: threads SECONDS\n");
        return 2;
    }
    if (!hz_api_load()) {
        FAIL("the shim is not loaded (no shmtrace_get_stats)");
        return 1;
    }
    shmtrace_stats s0 = hz_stats();
    long leaks0 = (long)hz_api.leak_count();

    MUST((sem = hz_semget(1 + THREADS)) >= 0);
    MUST(COUNTED(SEMCTL, semctl(sem, 0, SETVAL, (union semun){.val = 2})) == 0);
    deadline = hz_now() + atof(argv[1]);
    for (int k = 0; k < THREADS; k++)
        MUST(pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)k) == 0);
    for (int k = 0; k < THREADS; k++)
        MUST(pthread_join(t[k], NULL) == 0);

    /* Every page each thread left, against the kernel. */
    hz_kernel_load();
    for (int k = 0; k < THREADS; k++)
        for (int i = 0; i < REGIONS; i++) {
            struct region *r = &left[k][i];
            EXPECT(!(d = hz_disagreement_loaded(r->at, PG(r->pages), 0)),
                   "thread %d, region %d, against /proc/self/maps: %s", k, i, d);
            if (r->kind >= 0)
                EXPECT(!(d = hz_exact_mapping(r->at, PG(r->pages), r->kind, r->shmid)),
                       "thread %d, region %d: %s", k, i, d);
        }

    shmtrace_stats s1 = hz_stats();
    EXPECT_EQ("stats.mappings - before", (long)(s1.mappings - s0.mappings),
              THREADS * LEFT_MAPPINGS);
    EXPECT_EQ("stats.bytes_mapped - before (pages)",
              (long)(s1.bytes_mapped - s0.bytes_mapped) / hz_pg, THREADS * LEFT_PAGES);
    EXPECT_EQ("stats.attachments - before", (long)(s1.attachments - s0.attachments), THREADS);
    EXPECT_EQ("stats.segments - before", (long)(s1.segments - s0.segments), 0);
    EXPECT_EQ("stats.semaphore_sets - before", (long)(s1.semaphore_sets - s0.semaphore_sets),
              1);
    for (int i = 0; i < NFN; i++) {
        unsigned long own = atomic_load(&hz_total_calls[i]) + hz_calls[i];
        EXPECT(s1.calls[i] - s0.calls[i] == own, "stats.calls[%s]: %lu, the program made %lu",
               hz_fn_names[i], (unsigned long)(s1.calls[i] - s0.calls[i]), own);
    }
    EXPECT(s1.unknown_unmaps == s0.unknown_unmaps && s1.untracked == s0.untracked &&
               s1.internal_failures == s0.internal_failures,
           "unknown unmaps %lu, untracked %lu, internal failures %lu (all should be 0: every "
           "munmap released what the program had mapped)",
           (unsigned long)(s1.unknown_unmaps - s0.unknown_unmaps),
           (unsigned long)(s1.untracked - s0.untracked),
           (unsigned long)(s1.internal_failures - s0.internal_failures));

    /* Release everything: the ledger is back where it was. */
    for (int k = 0; k < THREADS; k++) {
        struct region *l = left[k];
        MUST(COUNTED(MUNMAP, munmap(l[0].at, PG(4))) == 0);
        MUST(COUNTED(MUNMAP, munmap(l[1].at, PG(6))) == 0);
        MUST(COUNTED(MUNMAP, munmap(l[2].at, PG(7))) == 0);
        MUST(COUNTED(MUNMAP, munmap(l[3].at, PG(2))) == 0);
        MUST(COUNTED(SHMDT, shmdt(l[4].at)) == 0);
        MUST(COUNTED(MUNMAP, munmap(l[5].at, PG(5))) == 0);
    }
    MUST(hz_rm_sem(sem) == 0);
    hz_kernel_load();
    for (int k = 0; k < THREADS; k++)
        for (int i = 0; i < REGIONS; i++)
            EXPECT(!(d = hz_disagreement_loaded(left[k][i].at, PG(left[k][i].pages), -1)),
                   "thread %d, region %d, once released: %s", k, i, d);
    shmtrace_stats s2 = hz_stats();
    EXPECT(s2.mappings == s0.mappings && s2.bytes_mapped == s0.bytes_mapped &&
               s2.attachments == s0.attachments && s2.segments == s0.segments &&
               s2.semaphore_sets == s0.semaphore_sets,
           "after releasing everything the ledger holds %lu mappings (%lu bytes), %lu "
           "attachments, %lu segments, %lu sets; it held %lu (%lu), %lu, %lu, %lu at the start",
           (unsigned long)s2.mappings, (unsigned long)s2.bytes_mapped,
           (unsigned long)s2.attachments, (unsigned long)s2.segments,
           (unsigned long)s2.semaphore_sets, (unsigned long)s0.mappings,
           (unsigned long)s0.bytes_mapped, (unsigned long)s0.attachments,
           (unsigned long)s0.segments, (unsigned long)s0.semaphore_sets);
    EXPECT_EQ("shmtrace_leak_count() - before", (long)hz_api.leak_count() - leaks0, 0);
    hz_publish();
    return hz_status();
}
