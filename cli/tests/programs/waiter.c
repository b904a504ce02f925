/* waiter: prints "ready PID" and reads stdin until end of file, then exits 0. A SIGINT with
 * its default action ends it. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
    return 0;
}
