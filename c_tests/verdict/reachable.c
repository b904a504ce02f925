/* Three ways a mapping stays referenced until exit, each one still reachable, not lost: the
 * only pointer in a malloc'd struct, the only pointer inside another mapping that is itself
 * reachable, and a pointer into the middle of a mapping. */
#include <stdlib.h>
#include <sys/mman.h>

struct holder {
    long tag;
    void *mapping;
};

static struct holder *volatile held;    /* -> malloc'd struct -> mapping A */
static void **volatile outer;           /* mapping B, holding the only pointer to C */
static char *volatile middle;           /* points 5000 bytes into mapping D */

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        exit(2);
    return p;
}

static __attribute__((noinline)) void in_struct(void)
{
    struct holder *h = malloc(sizeof *h);
    if (!h)
        exit(2);
    h->tag = 1;
    h->mapping = map(4096);
    held = h;
}

static __attribute__((noinline)) void in_mapping(void)
{
    void **b = map(2 * 4096);
    b[100] = map(3 * 4096);
    outer = b;
}

static __attribute__((noinline)) void into_the_middle(void)
{
    middle = (char *)map(4 * 4096) + 5000;
}

int main(void)
{
    in_struct();
    in_mapping();
    into_the_middle();
    return 0;
}
