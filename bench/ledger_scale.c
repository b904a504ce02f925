/* Ledger scale: the cost of one mmap+munmap pair while N mappings are live, the cost of
 * unmapping those N in random order, and (under the shim) the shim's own memory per live
 * mapping. Run natively and with LD_PRELOAD=libshmtrace.so SHMTRACE_LOG=off by bench/run.py;
 * prints one line: "N pair_ns teardown_ns heap_bytes_per_mapping" (the last -1 natively). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "shmtrace.h"

#define PAGE 4096
#define PAIRS 20000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* The shim's heap, when it is preloaded; -1 natively. */
static int64_t shim_heap(void)
{
    shmtrace_result (*get)(shmtrace_stats *) =
        (shmtrace_result (*)(shmtrace_stats *))dlsym(RTLD_DEFAULT, "shmtrace_get_stats");
    shmtrace_stats s;
    return get && get(&s) == SHMTRACE_OK ? (int64_t)s.shim_heap_bytes : -1;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    void **live = malloc(n * sizeof *live);
    if (!live)
        return 1;
    int64_t heap0 = shim_heap();
    for (long i = 0; i < n; i++) {
        live[i] = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (live[i] == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
    }
    int64_t heap1 = shim_heap();

    double t0 = now_ns();
    for (int i = 0; i < PAIRS; i++) {
        void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || munmap(p, PAGE) != 0)
            return 1;
    }
    double pair_ns = (now_ns() - t0) / PAIRS;

    srand(42);
    for (long i = n - 1; i > 0; i--) {
        long j = rand() % (i + 1);
        void *t = live[i];
        live[i] = live[j];
        live[j] = t;
    }
    t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (munmap(live[i], PAGE) != 0) {
            perror("munmap");
            return 1;
        }
    double teardown_ns = (now_ns() - t0) / n;

    double per_mapping = heap0 < 0 ? -1 : (double)(heap1 - heap0) / n;
    printf("%ld %.0f %.0f %.1f\n", n, pair_ns, teardown_ns, per_mapping);
    free(live);
    return 0;
}
