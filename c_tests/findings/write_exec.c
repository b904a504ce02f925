/* SHM003 write-exec-mapping: a mapping both writable and executable (by mmap, then mremap of
 * it). Fixed: write through a PROT_READ|PROT_WRITE mapping, then mprotect it to
 * PROT_READ|PROT_EXEC. */
#include "findings.h"

int main(void)
{
    size_t len = (size_t)page();
#ifdef FIXED
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap");
    p[0] = (char)0xc3;
    check(mprotect(p, len, PROT_READ | PROT_EXEC) == 0, "mprotect");
    char *q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
#else
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    check(p != MAP_FAILED, "mmap");
    p[0] = (char)0xc3;
    char *q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
#endif
    check(q != MAP_FAILED, "mremap");
    check(munmap(q, 2 * len) == 0, "munmap");
    return 0;
}
