/*
 * longrun: CALLS hooked calls with a constant number of live objects; the shim's own memory
 * (shmtrace_stats.shim_heap_bytes) and the process's VmRSS are sampled 20 times and must stay
 * flat once warm; then the heap must follow the number of live objects (grow with 20000 live
 * mappings, not grow again when they are released and made again).
 *
 *     longrun CALLS
 *
 * Each step unmaps the oldest of LIVE mappings and maps a new one, and does a semop V and P;
 * every 64 steps an shmat/shmdt, every 256 an mremap that grows a live mapping. Prints
 * `SAMPLE calls heap_bytes rss_kb ledger_mappings` lines (stdout) for run.py to show.
 */
#include "hostile.h"

#define LIVE 1000
#define SAMPLES 20
#define CHUNK (256 << 10) /* the shim's heap grows by chunks of this size */
#define MANY 20000

static char status_buf[8192];

static long rss_kb(void)
{
    char *p;
    MUST(hz_slurp("/proc/self/status", status_buf, sizeof status_buf) > 0);
    p = strstr(status_buf, "VmRSS:");
    MUST(p);
    return strtol(p + 6, NULL, 10);
}

static char *ring[LIVE];
static size_t ring_pages[LIVE];
static char *many[MANY];

int main(int argc, char **argv)
{
    hz_init("longrun");
    if (argc != 2) {
        fprintf(stderr, "usage: longrun CALLS\n");
        return 2;
    }
    unsigned long total = strtoul(argv[1], NULL, 10), calls = 0, step = 0;
    MUST(hz_api_load());
    int sem = hz_semget(1), shm = hz_shmget(PG(1));
    MUST(sem >= 0 && shm >= 0);
    struct sembuf up = {0, 1, 0}, down = {0, -1, 0};
    for (int i = 0; i < LIVE; i++) {
        ring_pages[i] = 1;
        ring[i] = mmap(NULL, PG(1), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        MUST(ring[i] != MAP_FAILED);
        calls++;
    }
    unsigned long heap[SAMPLES + 1];
    long rss[SAMPLES + 1];
    int next = 0;
    while (calls < total) {
        int i = (int)(step % LIVE);
        MUST(munmap(ring[i], PG(ring_pages[i])) == 0);
        ring_pages[i] = 1 + step % 3;
        ring[i] = mmap(NULL, PG(ring_pages[i]), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        MUST(ring[i] != MAP_FAILED);
        MUST(semop(sem, &up, 1) == 0);
        MUST(semop(sem, &down, 1) == 0);
        calls += 4;
        if (step % 64 == 0) {
            char *a = shmat(shm, NULL, SHM_RDONLY);
            MUST(a != (void *)-1);
            MUST(shmdt(a) == 0);
            calls += 2;
        }
        if (step % 256 == 0) {
            char *g = mremap(ring[i], PG(ring_pages[i]), PG(ring_pages[i] + 2), MREMAP_MAYMOVE);
            MUST(g != MAP_FAILED);
            ring[i] = g;
            ring_pages[i] += 2;
            calls++;
        }
        step++;
        while (next <= SAMPLES && calls >= total / SAMPLES * (unsigned long)next) {
            shmtrace_stats s = hz_stats();
            heap[next] = s.shim_heap_bytes;
            rss[next] = rss_kb();
            hz_say("SAMPLE %lu %lu %ld %lu\n", calls, heap[next], rss[next],
                   (unsigned long)s.mappings);
            next++;
        }
    }
    while (next <= SAMPLES) { /* tiny runs */
        heap[next] = hz_stats().shim_heap_bytes;
        rss[next++] = rss_kb();
    }
    shmtrace_stats s = hz_stats();
    unsigned long seen = 0;
    for (int i = 0; i < NFN; i++)
        seen += s.calls[i];
    EXPECT(seen >= calls, "the ledger counted %lu calls, the program made %lu", seen, calls);
    /* Flat once warm: from 10% to the end, at most one more chunk of heap, 2 MiB of RSS. */
    EXPECT(heap[SAMPLES] <= heap[SAMPLES / 10] + CHUNK,
           "shim heap grew with the number of calls: %lu bytes after %lu%% of the calls, %lu "
           "at the end (same live objects)", heap[SAMPLES / 10], 100ul / SAMPLES * (SAMPLES / 10),
           heap[SAMPLES]);
    EXPECT(heap[SAMPLES] == heap[SAMPLES / 2],
           "shim heap still growing in the second half: %lu -> %lu bytes", heap[SAMPLES / 2],
           heap[SAMPLES]);
    EXPECT(rss[SAMPLES] <= rss[SAMPLES / 10] + 2048,
           "VmRSS grew with the number of calls: %ld kB after 10%% of the calls, %ld kB at the "
           "end", rss[SAMPLES / 10], rss[SAMPLES]);

    /* Only with live objects: MANY more live mappings grow it; released and made again, not. */
    unsigned long h1 = hz_stats().shim_heap_bytes, h2 = 0, h3 = 0, h4 = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MANY; i++) {
            /* alternate protections: distinct kernel VMAs, distinct ledger entries */
            many[i] = mmap(NULL, PG(1), i % 2 ? PROT_READ : PROT_NONE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            MUST(many[i] != MAP_FAILED);
        }
        if (round == 0)
            h2 = hz_stats().shim_heap_bytes;
        else
            h4 = hz_stats().shim_heap_bytes;
        EXPECT_EQ("ledger mappings with MANY more live", (long)hz_stats().mappings, LIVE + MANY);
        for (int i = 0; i < MANY; i++)
            MUST(munmap(many[i], PG(1)) == 0);
        if (round == 0)
            h3 = hz_stats().shim_heap_bytes;
    }
    hz_say("LIVE h1=%lu h2=%lu h3=%lu h4=%lu per_mapping=%.1f\n", h1, h2, h3, h4,
           (double)(h2 - h1) / MANY);
    EXPECT(h2 > h1, "%d more live mappings did not grow the shim heap (%lu -> %lu): is "
           "shim_heap_bytes measured?", MANY, h1, h2);
    EXPECT(h4 <= h3 + CHUNK, "the same %d live mappings made again grew the heap again: "
           "%lu after releasing them, %lu with them back", MANY, h3, h4);

    for (int i = 0; i < LIVE; i++)
        MUST(munmap(ring[i], PG(ring_pages[i])) == 0);
    MUST(hz_rm_shm(shm) == 0);
    MUST(hz_rm_sem(sem) == 0);
    EXPECT_EQ("shmtrace_leak_count() at the end", hz_api.leak_count(), 0);
    return hz_status();
}
