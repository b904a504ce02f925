/* One scenario per class of ledger divergence the differential fuzzing found, run under the
 * shim: after each, the ledger must match the kernel page by page (check.h). Prints one line
 * per scenario: "ok NAME", "FAIL NAME: why" or "skipped: NAME: why"; exits 1 on a failure. */
#include "check.h"

#include <errno.h>

#define ZONE ((char *)0x100000000000UL)
#define HUGE (2UL << 20)
#define ZONE_SIZE (16 * HUGE)

static int failures;

static void verdict(const char *name)
{
    char why[512];
    read_maps();
    if (check_range((uintptr_t)ZONE, (uintptr_t)ZONE + ZONE_SIZE, why, sizeof why))
        printf("ok %s\n", name);
    else {
        printf("FAIL %s: %s\n", name, why);
        failures++;
    }
    munmap(ZONE, ZONE_SIZE);
}

static void *anon(char *at, size_t len, int prot)
{
    return mmap(at, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}

/* Class 1: re-opening one's own segment with other flags is not creating it. */
static void reopening_own_segment(void)
{
    int id = shmget(0x5eed, 3 * PAGE, IPC_CREAT | IPC_EXCL | 0600);
    int again = shmget(0x5eed, 0, IPC_CREAT | SHM_HUGETLB | 0600);
    anon(ZONE + 3 * PAGE, PAGE, PROT_READ);
    void *at = shmat(again, ZONE, 0);
    char why[256];
    read_maps();
    if (id < 0 || again != id || at != ZONE)
        printf("FAIL reopening_own_segment: shmget %d/%d shmat %p\n", id, again, at), failures++;
    else if (!check_nattch(id, why, sizeof why))
        printf("FAIL reopening_own_segment: %s\n", why), failures++;
    shmdt(at);
    shmctl(id, IPC_RMID, NULL);
    verdict("reopening_own_segment");
    int64_t (*leaks)(void) = (int64_t(*)(void))(uintptr_t)dlsym(RTLD_DEFAULT, "shmtrace_leak_count");
    if (leaks && leaks() != 0)
        printf("FAIL reopening_own_segment: %lld leaks after cleanup\n", (long long)leaks()), failures++;
}

/* Classes 2 and 7: shmdt finds moved, kept and duplicated pieces, and stops at a piece grown
 * past the segment. */
static void shmdt_of_remapped_pieces(void)
{
    int id = shmget(IPC_PRIVATE, 4 * PAGE, 0600);
    shmat(id, ZONE, 0);
    mremap(ZONE, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + HUGE);
    shmdt(ZONE + HUGE);
    shmat(id, ZONE, 0);
    mremap(ZONE + PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, ZONE + HUGE + PAGE);
    mremap(ZONE + 2 * PAGE, 0, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + 2 * HUGE);
    shmdt(ZONE);
    shmdt(ZONE + HUGE);
    shmdt(ZONE + 2 * HUGE - 2 * PAGE);
    shmat(id, ZONE + 3 * HUGE, 0);
    munmap(ZONE + 3 * HUGE + PAGE, PAGE);
    mremap(ZONE + 3 * HUGE + 2 * PAGE, 2 * PAGE, 4 * PAGE, 0);
    shmdt(ZONE + 3 * HUGE);
    shmctl(id, IPC_RMID, NULL);
    verdict("shmdt_of_remapped_pieces");
}

/* Class 3: a same-size fixed move of a range with a hole (several VMAs since Linux 6.17). */
static void move_across_a_hole(void)
{
    anon(ZONE, PAGE, PROT_READ);
    anon(ZONE + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE);
    anon(ZONE + HUGE, 3 * PAGE, PROT_READ | PROT_EXEC);
    munmap(ZONE + HUGE + PAGE, PAGE); /* the target facing the hole: unmapped, and stays so */
    void *r = mremap(ZONE, 3 * PAGE, 3 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + HUGE);
    if (r == MAP_FAILED)
        printf("skipped: move_across_a_hole: this kernel moves one VMA at a time only (before 6.17)\n");
    verdict("move_across_a_hole");
}

/* Class 4: a failed fixed mremap may have unmapped its target (Linux 6.18 validates first:
 * there the ledger must simply keep the target). */
static void failed_mremap_fixed(void)
{
    anon(ZONE, 2 * PAGE, PROT_READ);
    anon(ZONE + HUGE, 4 * PAGE, PROT_READ);
    void *r = mremap(ZONE, 1UL << 60, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + HUGE);
    if (r != MAP_FAILED)
        printf("FAIL failed_mremap_fixed: it succeeded\n"), failures++;
    verdict("failed_mremap_fixed");
}

/* Class 5: a failed MAP_FIXED|MAP_HUGETLB has already discarded its range. */
static void failed_map_fixed_hugetlb(void)
{
    anon(ZONE, 4 * PAGE, PROT_READ);
    void *r = mmap(ZONE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (r != MAP_FAILED) {
        printf("skipped: failed_map_fixed_hugetlb: huge pages are reserved, the call succeeded\n");
        munmap(ZONE, ZONE_SIZE);
        return;
    }
    verdict("failed_map_fixed_hugetlb");
}

/* Class 6: hugetlb mremap lengths are rounded to the huge page. */
static void hugetlb_mremap_rounding(void)
{
    char *p = mmap(ZONE, 2 * HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) {
        printf("skipped: hugetlb_mremap_rounding: no huge pages (vm.nr_hugepages)\n");
        return;
    }
    mremap(p, 2 * HUGE, 2 * HUGE - 8 * PAGE, 0);
    mremap(p, HUGE + PAGE, HUGE, 0);
    verdict("hugetlb_mremap_rounding");
}

/* A failed MAP_FIXED, munmap, shmat(SHM_REMAP) or shrinking mremap that cannot split a hugetlb
 * VMA at its end has already split an attachment at its start: one piece more each, nothing
 * unmapped. */
static void failed_calls_split_an_attachment(void)
{
    int id = shmget(IPC_PRIVATE, HUGE, 0600);
    shmat(id, ZONE, 0);
    char *h = mmap(ZONE + HUGE, HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (h == MAP_FAILED) {
        printf("skipped: failed_calls_split_an_attachment: no huge pages (vm.nr_hugepages)\n");
    } else {
        char why[256];
        void *r = mmap(ZONE + HUGE - 31 * PAGE, HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        int m = munmap(ZONE + HUGE - 63 * PAGE, HUGE);
        int other = shmget(IPC_PRIVATE, HUGE, 0600);
        void *s = shmat(other, ZONE + HUGE - 95 * PAGE, SHM_REMAP);
        /* A shrink unmaps its tail first: here from inside the attachment into the huge page. */
        void *q = mremap(ZONE + HUGE - 127 * PAGE, 200 * PAGE, 8 * PAGE, 0);
        shmctl(other, IPC_RMID, NULL);
        read_maps();
        if (r != MAP_FAILED || m == 0 || s != (void *)-1 || q != MAP_FAILED)
            printf("skipped: failed_calls_split_an_attachment: the calls succeeded\n");
        else if (!check_nattch(id, why, sizeof why))
            printf("FAIL failed_calls_split_an_attachment: %s\n", why), failures++;
        verdict("failed_calls_split_an_attachment");
    }
    shmctl(id, IPC_RMID, NULL);
    munmap(ZONE, ZONE_SIZE);
}

/* Class 8: a failed MREMAP_DONTUNMAP move copies a prefix of its source's VMAs, and the target
 * already holds the same segment at the same offsets as a piece past that prefix: no copy. The
 * kernel stops at an attachment that is not the only VMA of the range (after copying what comes
 * before it), and refuses a source that begins in a hole or an attachment followed by more. */
static void failed_dontunmap_onto_the_same_segment(void)
{
    const int flags = MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP;
    int id = shmget(IPC_PRIVATE, 4 * PAGE, 0600), other = shmget(IPC_PRIVATE, PAGE, 0600);
    char *t = ZONE + HUGE;
    anon(ZONE, PAGE, PROT_READ | PROT_WRITE);
    shmat(other, ZONE + 2 * PAGE, 0);
    shmat(id, ZONE + 4 * PAGE, 0);
    munmap(ZONE + 4 * PAGE, PAGE); /* the source's piece: offsets 1-3 at ZONE + 5-7 pages */
    anon(ZONE + 8 * PAGE, PAGE, PROT_READ);
    shmat(id, t + 4 * PAGE, 0); /* the target's: offsets 0-3 at t + 4-7 pages */
    void *stopped = mremap(ZONE, 8 * PAGE, 8 * PAGE, flags, t);
    void *hole = mremap(ZONE + 4 * PAGE, 4 * PAGE, 4 * PAGE, flags, t + 4 * PAGE);
    void *more = mremap(ZONE + 5 * PAGE, 4 * PAGE, 4 * PAGE, flags, t + 5 * PAGE);
    char why[256];
    read_maps();
    if (id < 0 || other < 0)
        printf("FAIL failed_dontunmap_onto_the_same_segment: shmget %d %d\n", id, other), failures++;
    else if (stopped != MAP_FAILED || hole != MAP_FAILED || more != MAP_FAILED)
        printf("skipped: failed_dontunmap_onto_the_same_segment: the moves succeeded\n");
    else if (!check_nattch(id, why, sizeof why))
        printf("FAIL failed_dontunmap_onto_the_same_segment: %s\n", why), failures++;
    shmctl(id, IPC_RMID, NULL);
    shmctl(other, IPC_RMID, NULL);
    verdict("failed_dontunmap_onto_the_same_segment");
}

/* Class 9: a failed MREMAP_FIXED shrink unmaps its tail before it moves; one that cannot split
 * a hugetlb VMA at the tail's end has already split an attachment at its start. */
static void failed_fixed_shrink_splits_an_attachment(void)
{
    int id = shmget(IPC_PRIVATE, 8 * PAGE, 0600);
    shmat(id, ZONE + HUGE - 8 * PAGE, 0);
    char *h = mmap(ZONE + HUGE, HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (h == MAP_FAILED) {
        printf("skipped: failed_fixed_shrink_splits_an_attachment: no huge pages (vm.nr_hugepages)\n");
    } else {
        char why[256];
        void *q = mremap(ZONE + HUGE - 8 * PAGE, 16 * PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + 4 * HUGE);
        read_maps();
        if (q != MAP_FAILED)
            printf("skipped: failed_fixed_shrink_splits_an_attachment: the call succeeded\n");
        else if (!check_nattch(id, why, sizeof why))
            printf("FAIL failed_fixed_shrink_splits_an_attachment: %s\n", why), failures++;
        verdict("failed_fixed_shrink_splits_an_attachment");
    }
    shmctl(id, IPC_RMID, NULL);
    munmap(ZONE, ZONE_SIZE);
}

/* Class 10: a same-length MREMAP_FIXED move rounds each VMA's part to that VMA's page size: a
 * huge attachment followed by a hole moves its 2 MiB and nothing past the range's end, while a
 * hugetlb VMA that the range's end cuts moves whole huge pages. */
static void fixed_move_rounds_each_vma(void)
{
    int id = shmget(IPC_PRIVATE, HUGE, SHM_HUGETLB | 0600);
    void *at = id < 0 ? (void *)-1 : shmat(id, ZONE, 0);
    char *h = mmap(ZONE + 8 * HUGE, 2 * HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB, -1, 0);
    if (at == (void *)-1 || h == MAP_FAILED) {
        printf("skipped: fixed_move_rounds_each_vma: no huge pages (vm.nr_hugepages)\n");
    } else {
        anon(ZONE + 2 * HUGE - 16 * PAGE, 8 * PAGE, PROT_NONE); /* past the range, within its huge rounding */
        void *a = mremap(ZONE, HUGE + 8 * PAGE, HUGE + 8 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + 4 * HUGE);
        void *b = mremap(h, HUGE + 8 * PAGE, HUGE + 8 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, ZONE + 12 * HUGE);
        if (a == MAP_FAILED || b == MAP_FAILED)
            printf("skipped: fixed_move_rounds_each_vma: this kernel moves one VMA at a time only (before 6.17)\n");
        else
            verdict("fixed_move_rounds_each_vma");
    }
    if (id >= 0)
        shmctl(id, IPC_RMID, NULL);
    munmap(ZONE, ZONE_SIZE);
}

int main(void)
{
    if (!ledger_mapping_at()) {
        printf("skipped: regress: not running under libshmtrace.so\n");
        return 0;
    }
    reopening_own_segment();
    shmdt_of_remapped_pieces();
    move_across_a_hole();
    failed_mremap_fixed();
    failed_map_fixed_hugetlb();
    hugetlb_mremap_rounding();
    failed_calls_split_an_attachment();
    failed_dontunmap_onto_the_same_segment();
    failed_fixed_shrink_splits_an_attachment();
    fixed_move_rounds_each_vma();
    return failures != 0;
}
