/* ledger_map: the ledger's mappings against /proc/self/maps, page by page, for every
 * munmap, MAP_FIXED and mremap rule of docs/ARCHITECTURE.md ("Kernel semantics the ledger
 * models"). */
#include "harness.h"
#include "ledger.h"

static void munmap_start(void)
{
    shmtrace_stats before = stats();
    char *m = map(4, RW, MAP_PRIVATE);
    unmap(m, 1);
    AGREE(m, 4);
    EXPECT_HELD(before, 1, 3);
    unmap(m + P(1), 3);
    AGREE(m, 4);
}

static void munmap_middle(void)
{
    shmtrace_stats before = stats();
    char *m = map(5, RW, MAP_PRIVATE);
    unmap(m + P(1), 2); /* two remnants: page 0 and pages 3-4 */
    AGREE(m, 5);
    EXPECT_HELD(before, 2, 3);
    unmap(m, 5);
    AGREE(m, 5);
    EXPECT_HELD(before, 0, 0);
}

static void munmap_end(void)
{
    shmtrace_stats before = stats();
    char *m = map(4, RW, MAP_PRIVATE);
    unmap(m + P(3), 1);
    AGREE(m, 4);
    EXPECT_HELD(before, 1, 3);
    unmap(m, 3);
}

/* munmap of a range nothing is mapped in, or that only a raw syscall mapped: the kernel says
 * 0, the ledger counts an unknown unmap and nothing else changes. */
static void munmap_unknown(void)
{
    char *keep = map(2, RW, MAP_PRIVATE);
    char *hole = map(2, RW, MAP_PRIVATE);
    unmap(hole, 2);
    shmtrace_stats before = stats();
    unmap(hole, 2);
    EXPECT_EQ("stats.unknown_unmaps - before, after munmap of a hole",
              stats().unknown_unmaps - before.unknown_unmaps, 1);
    AGREE(hole, 2);
    char *raw = (char *)syscall(SYS_mmap, NULL, P(2), RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MUST(raw != MAP_FAILED);
    unmap(raw, 2);
    EXPECT_EQ("stats.unknown_unmaps - before, after munmap of a raw-syscall mapping",
              stats().unknown_unmaps - before.unknown_unmaps, 2);
    AGREE(raw, 2);
    AGREE(keep, 2);
    EXPECT_HELD(before, 0, 0);
    unmap(keep, 2);
}

/* MAP_FIXED over the middle of a mapping, with another protection and MAP_SHARED. */
static void fixed_over_mapping(void)
{
    shmtrace_stats before = stats();
    char *m = map(4, RW, MAP_PRIVATE);
    char *f = mmap(m + P(1), P(2), PROT_READ, MAP_FIXED | MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    MUST(f == m + P(1));
    AGREE(m, 4);
    EXPECT_HELD(before, 3, 4);
    unmap(m, 4);
    AGREE(m, 4);
}

/* MAP_FIXED over the middle of an attachment splits it; shmdt then removes the shm pieces
 * and leaves the anonymous page. */
static void fixed_over_attachment(void)
{
    int id = new_shm(P(4));
    char *a = attach(id, NULL, 0);
    MUST(mmap(a + P(1), P(1), RW, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == a + P(1));
    AGREE(a, 4);
    EXPECT_EQ("shmtrace_attachments_of (one shmat, split)", shmtrace_attachments_of(id), 1);
    EXPECT_EQ("ledger pieces of the attachment vs the kernel's nattch (one per VMA)",
              ledger_pieces(a, P(4), id), kernel_nattch(id));
    detach(a);
    AGREE(a, 4);
    AGREE_ATTACHMENTS(id, 0);
    unmap(a + P(1), 1);
    remove_shm(id);
}

/* MAP_FIXED over a whole attachment detaches it. */
static void fixed_over_whole_attachment(void)
{
    int id = new_shm(P(2));
    char *a = attach(id, NULL, 0);
    MUST(mmap(a, P(2), PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == a);
    AGREE(a, 2);
    AGREE_ATTACHMENTS(id, 0);
    EXPECT(shmdt(a) == -1 && errno == EINVAL, "shmdt after MAP_FIXED replaced it: %s",
           h_errname(errno));
    unmap(a, 2);
    remove_shm(id);
}

/* MAP_FIXED_NOREPLACE into a free range maps; over a mapped page it fails with EEXIST and
 * changes nothing. */
static void fixed_noreplace(void)
{
    char *m = map(4, RW, MAP_PRIVATE);
    unmap(m, 4); /* a free range, in both views */
    shmtrace_stats before = stats();
    char *r = mmap(m + P(1), P(2), RW, MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MUST(r == m + P(1));
    AGREE(m, 4);
    EXPECT_HELD(before, 1, 2);
    r = mmap(m, P(2), PROT_READ, MAP_FIXED_NOREPLACE | MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT(r == MAP_FAILED && errno == EEXIST, "MAP_FIXED_NOREPLACE over a mapped page: %p %s",
           (void *)r, h_errname(errno));
    AGREE(m, 4);
    EXPECT_HELD(before, 1, 2);
    unmap(m + P(1), 2);
}

static void mremap_shrink(void)
{
    shmtrace_stats before = stats();
    char *m = map(8, RW, MAP_PRIVATE);
    MUST(mremap(m, P(8), P(3), 0) == m);
    AGREE(m, 8);
    EXPECT_HELD(before, 1, 3);
    unmap(m, 3);
}

static void mremap_grow(void)
{
    shmtrace_stats before = stats();
    char *m = map(8, RW, MAP_PRIVATE);
    unmap(m + P(4), 4); /* room to grow in place */
    MUST(mremap(m, P(4), P(8), 0) == m);
    AGREE(m, 8);
    EXPECT_HELD(before, 1, 8);
    unmap(m, 8);
}

/* A mapping that cannot grow in place (the next page is mapped) moves. */
static void mremap_maymove(void)
{
    shmtrace_stats before = stats();
    char *m = map(3, RW, MAP_PRIVATE);
    MUST(mmap(m + P(2), P(1), PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
         m + P(2));
    m[0] = 'x';
    char *r = mremap(m, P(2), P(4), MREMAP_MAYMOVE);
    MUST(r != MAP_FAILED && r != m && r[0] == 'x');
    AGREE(m, 3);
    AGREE(r, 4);
    EXPECT_HELD(before, 2, 5);
    unmap(m + P(2), 1);
    unmap(r, 4);
}

/* MREMAP_FIXED: the target range is unmapped first, whatever was there. */
static void mremap_fixed(void)
{
    shmtrace_stats before = stats();
    char *src = map(2, RW, MAP_PRIVATE);
    char *dst = map(4, PROT_READ, MAP_SHARED);
    MUST(mremap(src, P(2), P(2), MREMAP_MAYMOVE | MREMAP_FIXED, dst + P(1)) == dst + P(1));
    AGREE(src, 2);
    AGREE(dst, 4);
    EXPECT_HELD(before, 3, 4);
    unmap(dst, 4);
}

/* MREMAP_DONTUNMAP: the pages move, the source range stays mapped (empty). */
static void mremap_dontunmap(void)
{
    shmtrace_stats before = stats();
    char *src = map(2, RW, MAP_PRIVATE);
    src[0] = 'x';
    /* glibc passes the fifth argument whatever the flags: NULL lets the kernel choose */
    char *r = mremap(src, P(2), P(2), MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    MUST(r != MAP_FAILED && r != src && r[0] == 'x' && src[0] == 0);
    AGREE(src, 2);
    AGREE(r, 2);
    EXPECT_HELD(before, 2, 4);
    unmap(src, 2);
    unmap(r, 2);
}

/* old_size == 0 on a MAP_SHARED mapping: a second mapping of the same pages; on a
 * MAP_PRIVATE one the kernel refuses, and nothing changes. */
static void mremap_duplicate(void)
{
    shmtrace_stats before = stats();
    char *m = map(2, RW, MAP_SHARED);
    char *r = mremap(m, 0, P(2), MREMAP_MAYMOVE);
    MUST(r != MAP_FAILED && r != m);
    m[0] = 'x';
    MUST(r[0] == 'x');
    AGREE(m, 2);
    AGREE(r, 2);
    EXPECT_HELD(before, 2, 4);
    char *p = map(2, RW, MAP_PRIVATE);
    EXPECT(mremap(p, 0, P(2), MREMAP_MAYMOVE) == MAP_FAILED && errno == EINVAL,
           "mremap(old_size 0) of a private mapping: %s", h_errname(errno));
    AGREE(p, 2);
    EXPECT_HELD(before, 3, 6);
    unmap(m, 2);
    unmap(r, 2);
    unmap(p, 2);
}

/* The oracle itself: a munmap the ledger never saw (paused), a mapping it never saw (raw
 * syscall) and a protection it cannot see (mprotect is not hooked) must all be caught. */
static void control(void)
{
    char *m = map(2, RW, MAP_PRIVATE);
    shmtrace_pause();
    unmap(m, 1);
    shmtrace_resume();
    EXPECT(disagreement(m, P(2)), "the oracle missed a munmap the ledger never saw");
    MUST(mmap(m, P(2), RW, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == m); /* resync */
    AGREE(m, 2);
    MUST(mprotect(m + P(1), P(1), PROT_READ) == 0);
    EXPECT(disagreement(m, P(2)), "the oracle missed a protection the ledger does not know");
    unmap(m, 2);

    char *raw = (char *)syscall(SYS_mmap, NULL, P(1), RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MUST(raw != MAP_FAILED);
    EXPECT(disagreement(raw, P(1)), "the oracle missed a mapping the ledger never saw");
    MUST(syscall(SYS_munmap, raw, P(1)) == 0);
}

LEDGER_CASES(CASE(munmap_start), CASE(munmap_middle), CASE(munmap_end), CASE(munmap_unknown),
             CASE(fixed_over_mapping), CASE(fixed_over_attachment),
             CASE(fixed_over_whole_attachment), CASE(fixed_noreplace), CASE(mremap_shrink),
             CASE(mremap_grow), CASE(mremap_maymove), CASE(mremap_fixed),
             CASE(mremap_dontunmap), CASE(mremap_duplicate), CASE(control))
