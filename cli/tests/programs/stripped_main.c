/* stripped_main: calls the stripped library and prints "shm ID". */
#include <stdio.h>

int stripped_make_segment(void);

int main(void)
{
    int shm = stripped_make_segment();
    printf("shm %d\n", shm);
    return shm < 0;
}
