/* segv: creates a segment, then dies of SIGSEGV (no core file: RLIMIT_CORE is set to 0). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/resource.h>
#include <sys/shm.h>

int main(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:shmget */
    if (shm < 0) {
        perror("segv: shmget");
        return 1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);
    *(volatile int *)0 = 1;
    return 0;
}
