/* ledger_shm: the ledger's shm attachments against the kernel's nattch (IPC_STAT and
 * /proc/sysvipc/shm) and /proc/self/maps: each shmat its own attachment, shmdt by start
 * address after splits, munmap over an attachment, SHM_REMAP, SHM_RDONLY. */
#include "harness.h"
#include "ledger.h"

/* Two shmat of one segment: two attachments, detached one at a time. */
static void two_attachments(void)
{
    shmtrace_stats before = stats();
    int id = new_shm(P(2));
    char *a = attach(id, NULL, 0), *b = attach(id, NULL, 0);
    AGREE_ATTACHMENTS(id, 2);
    EXPECT_EQ("stats.attachments - before", stats().attachments - before.attachments, 2);
    AGREE(a, 2);
    AGREE(b, 2);
    detach(a);
    AGREE_ATTACHMENTS(id, 1);
    AGREE(a, 2);
    AGREE(b, 2);
    detach(b);
    AGREE_ATTACHMENTS(id, 0);
    AGREE(b, 2);
    EXPECT_HELD(before, 0, 0);
    remove_shm(id);
}

/* An attachment split by a partial munmap at `hole` (pages) is still one attachment; shmdt
 * of its start address removes every piece (even when the first page is the one unmapped). */
static void split_then_shmdt(size_t hole)
{
    shmtrace_stats before = stats();
    int id = new_shm(P(4));
    char *a = attach(id, NULL, 0);
    unmap(a + P(hole), 1);
    AGREE(a, 4);
    EXPECT_EQ("shmtrace_attachments_of after the split", shmtrace_attachments_of(id), 1);
    EXPECT_EQ("ledger pieces of the attachment vs the kernel's nattch (one per VMA)",
              ledger_pieces(a, P(4), id), kernel_nattch(id));
    detach(a);
    AGREE(a, 4);
    AGREE_ATTACHMENTS(id, 0);
    EXPECT_EQ("stats.attachments - before", stats().attachments - before.attachments, 0);
    EXPECT_HELD(before, 0, 0);
    remove_shm(id);
}

static void shmdt_after_middle_split(void)
{
    split_then_shmdt(1);
}

static void shmdt_after_start_split(void)
{
    split_then_shmdt(0);
}

/* munmap over a whole attachment detaches it: shmdt then fails. */
static void munmap_attachment(void)
{
    shmtrace_stats before = stats();
    int id = new_shm(P(2));
    char *a = attach(id, NULL, 0);
    unmap(a, 2);
    AGREE(a, 2);
    AGREE_ATTACHMENTS(id, 0);
    EXPECT(shmdt(a) == -1 && errno == EINVAL, "shmdt after munmap: %s", h_errname(errno));
    EXPECT_EQ("stats.attachments - before", stats().attachments - before.attachments, 0);
    EXPECT_HELD(before, 0, 0);
    remove_shm(id);
}

/* shmat over an attachment: refused without SHM_REMAP, replaces it with SHM_REMAP. */
static void shm_remap(void)
{
    int old = new_shm(P(2)), new = new_shm(P(2));
    char *a = attach(old, NULL, 0);
    EXPECT(shmat(new, a, 0) == (void *)-1 && errno == EINVAL,
           "shmat over an attachment without SHM_REMAP: %s", h_errname(errno));
    AGREE_ATTACHMENTS(old, 1);
    AGREE_ATTACHMENTS(new, 0);
    AGREE(a, 2);
    MUST(attach(new, a, SHM_REMAP) == a);
    AGREE_ATTACHMENTS(old, 0);
    AGREE_ATTACHMENTS(new, 1);
    AGREE(a, 2);
    detach(a);
    AGREE_ATTACHMENTS(new, 0);
    AGREE(a, 2);
    remove_shm(old);
    remove_shm(new);
}

/* SHM_REMAP over the middle of a plain mapping. */
static void shm_remap_mapping(void)
{
    shmtrace_stats before = stats();
    int id = new_shm(P(2));
    char *m = map(4, RW, MAP_PRIVATE);
    MUST(attach(id, m + P(1), SHM_REMAP) == m + P(1));
    AGREE(m, 4);
    AGREE_ATTACHMENTS(id, 1);
    detach(m + P(1));
    AGREE(m, 4);
    AGREE_ATTACHMENTS(id, 0);
    EXPECT_HELD(before, 2, 2);
    unmap(m, 4);
    remove_shm(id);
}

/* SHM_RDONLY is recorded read-only, in the mapping and in the report. */
static void rdonly(void)
{
    int id = new_shm(P(1));
    char *r = attach(id, NULL, SHM_RDONLY), *w = attach(id, NULL, 0);
    shmtrace_mapping m;
    MUST(shmtrace_mapping_at(r, &m) == SHMTRACE_OK);
    EXPECT(m.prot == PROT_READ && m.kind == SHMTRACE_MAPPING_SHM && m.shmid == id,
           "SHM_RDONLY attachment: ledger prot %#x kind %d shmid %d", m.prot, m.kind, m.shmid);
    MUST(shmtrace_mapping_at(w, &m) == SHMTRACE_OK);
    EXPECT(m.prot == RW, "read-write attachment: ledger prot %#x", m.prot);
    AGREE(r, 1);
    AGREE(w, 1);
    AGREE_ATTACHMENTS(id, 2);

    /* the report, as of now, says which is which */
    char want_r[160], want_w[160];
    int fd = memfd_create("report", MFD_CLOEXEC);
    MUST(fd >= 0 && shmtrace_write_report(fd, SHMTRACE_FORMAT_JSON) == SHMTRACE_OK);
    ssize_t n = pread(fd, lg_buf, sizeof lg_buf - 1, 0);
    MUST(n > 0);
    lg_buf[n] = '\0';
    close(fd);
    snprintf(want_r, sizeof want_r, "\"shmid\":%d,\"addr\":\"%p\",\"size\":%ld,\"readonly\":true",
             id, (void *)r, pg);
    snprintf(want_w, sizeof want_w, "\"shmid\":%d,\"addr\":\"%p\",\"size\":%ld,\"readonly\":false",
             id, (void *)w, pg);
    EXPECT(strstr(lg_buf, want_r) && strstr(lg_buf, want_w),
           "shmtrace_write_report should hold %s and %s: %s", want_r, want_w, lg_buf);
    detach(r);
    detach(w);
    AGREE_ATTACHMENTS(id, 0);
    remove_shm(id);
}

/* The oracle itself: a shmdt the ledger never saw (raw syscall) must be caught. */
static void control(void)
{
    int id = new_shm(P(1));
    char *a = attach(id, NULL, 0);
    MUST(syscall(SYS_shmdt, a) == 0);
    EXPECT(attachments_disagreement(id, 1), "the oracle missed a detach the ledger never saw");
    EXPECT(disagreement(a, P(1)), "/proc/self/maps missed a detach the ledger never saw");
    MUST(mmap(a, P(1), RW, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == a); /* resync */
    unmap(a, 1);
    AGREE_ATTACHMENTS(id, 0);
    remove_shm(id);
}

LEDGER_CASES(CASE(two_attachments), CASE(shmdt_after_middle_split),
             CASE(shmdt_after_start_split), CASE(munmap_attachment), CASE(shm_remap),
             CASE(shm_remap_mapping), CASE(rdonly), CASE(control))
