/* mmap: mmap / munmap / mremap, success and failure paths.
 * Also built with -D_FILE_OFFSET_BITS=64 (calls mmap64), -Wl,-z,now and -fno-plt. */
#include "harness.h"

#define PAGE 4096

int main(void)
{
    int r;

    /* anonymous private and shared */
    char *priv = CALL_PTR("anon_private", mmap, NULL, 3 * PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("mmap anonymous private", priv != MAP_FAILED);
    priv[0] = 'p';
    char *shared = CALL_PTR("anon_shared", mmap, NULL, PAGE, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    expect_ok("mmap anonymous shared", shared != MAP_FAILED);

    /* MAP_FIXED replaces the middle page of the private mapping */
    char *target = priv + PAGE;
    journal_value("fixed_target", (unsigned long)target);
    char *fixed = CALL_PTR("fixed", mmap, target, PAGE, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    expect_eq("mmap MAP_FIXED returns the requested address", fixed == target, 1);

    /* file-backed, at an offset */
    char path[] = "/tmp/shmtrace-mmap-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    CHECK(ftruncate(fd, 2 * PAGE) == 0);
    CHECK(pwrite(fd, "file data", 9, PAGE) == 9);
    journal_value("fd", (unsigned long)fd);
    char *file = CALL_PTR("file", mmap, NULL, PAGE, PROT_READ, MAP_SHARED, fd, PAGE);
    expect_ok("mmap file at offset 4096", file != MAP_FAILED);
    expect_eq("file contents visible", memcmp(file, "file data", 9), 0);

    /* failures */
    void *bad = CALL_PTR("len0", mmap, NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_fail("mmap length 0", bad == MAP_FAILED, EINVAL);
    bad = CALL_PTR("badfd", mmap, NULL, PAGE, PROT_READ, MAP_SHARED, -1, 0);
    expect_fail("mmap bad fd", bad == MAP_FAILED, EBADF);

    /* munmap */
    r = CALL_INT("munmap_misaligned", munmap, priv + 1, PAGE);
    expect_fail("munmap misaligned", r == -1, EINVAL);
    r = CALL_INT("munmap_file", munmap, file, PAGE);
    expect_eq("munmap file", r, 0);
    close(fd);
    r = CALL_INT("munmap_shared", munmap, shared, PAGE);
    expect_eq("munmap shared", r, 0);

    /* mremap: grow (may move), shrink in place */
    char *grown = CALL_PTR("grow", mremap, priv, PAGE, 8 * PAGE, MREMAP_MAYMOVE);
    expect_ok("mremap grow MREMAP_MAYMOVE", grown != MAP_FAILED);
    expect_eq("contents kept", grown[0], 'p');
    char *shrunk = CALL_PTR("shrink", mremap, grown, 8 * PAGE, 2 * PAGE, 0);
    expect_eq("mremap shrink stays in place", shrunk == grown, 1);

    /* MREMAP_FIXED onto a reserved range */
    char *dest = CALL_PTR("reserve", mmap, NULL, 2 * PAGE, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("mmap PROT_NONE reservation", dest != MAP_FAILED);
    journal_value("fixed_dest", (unsigned long)dest);
    char *moved = CALL_PTR("remap_fixed", mremap, shrunk, 2 * PAGE, 2 * PAGE,
                           MREMAP_MAYMOVE | MREMAP_FIXED, dest);
    expect_eq("mremap MREMAP_FIXED lands on new_address", moved == dest, 1);
    expect_eq("contents moved", moved[0], 'p');

    /* MREMAP_DONTUNMAP: moves the pages, keeps the old range mapped */
    char *copy = CALL_PTR("dontunmap", mremap, moved, 2 * PAGE, 2 * PAGE,
                          MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    expect_ok("mremap MREMAP_DONTUNMAP", copy != MAP_FAILED);
    expect_eq("contents at the new address", copy[0], 'p');
    expect_eq("old range still mapped, now empty", moved[0], 0);

    /* mremap failures */
    bad = CALL_PTR("badflags", mremap, copy, 2 * PAGE, 2 * PAGE, 0x80);
    expect_fail("mremap unknown flag", bad == MAP_FAILED, EINVAL);
    bad = CALL_PTR("fixed_nomove", mremap, copy, 2 * PAGE, 2 * PAGE, MREMAP_FIXED, dest);
    expect_fail("mremap MREMAP_FIXED without MREMAP_MAYMOVE", bad == MAP_FAILED, EINVAL);

    r = CALL_INT("munmap_copy", munmap, copy, 2 * PAGE);
    expect_eq("munmap", r, 0);
    r = CALL_INT("munmap_old", munmap, moved, 2 * PAGE);
    expect_eq("munmap old range", r, 0);
    return 0;
}
