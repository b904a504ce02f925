/* Maps in a loop and overwrites the only pointer each time: every mapping but the last is
 * lost (the last is still referenced from a global). */
#include <stdio.h>
#include <sys/mman.h>

void *volatile last;

int main(void)
{
    for (int i = 0; i < 4; i++) {
        last = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* LOST_LINE */
        if (last == MAP_FAILED)
            return 2;
    }
    return 0;
}
