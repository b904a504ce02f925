/* SHM006 munmap-never-mapped: a second munmap of a range already unmapped (nothing is mapped
 * there any more). Fixed: unmapped once; and no false alarm for memory mapped behind the
 * shim's back (a raw mmap syscall, as glibc's internals do): the kernel has it mapped. */
#include "findings.h"

int main(void)
{
    size_t len = 3 * (size_t)page();
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap");
    check(munmap(p, len) == 0, "munmap");
#ifdef FIXED
    void *raw = (void *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(raw != MAP_FAILED, "raw mmap");
    check(munmap(raw, len) == 0, "munmap of a raw mapping");
#else
    check(munmap(p, len) == 0, "second munmap succeeds natively");
#endif
    return 0;
}
