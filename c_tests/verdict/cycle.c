/* Two mappings that point only at each other, and nothing else points at them: both lost. */
#include <stdlib.h>
#include <sys/mman.h>

static __attribute__((noinline)) void make_cycle(void)
{
    void **a = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void **b = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        exit(2);
    a[0] = b;
    b[0] = a;
}

int main(void)
{
    make_cycle();
    return 0;
}
