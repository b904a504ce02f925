/* The same kind of program as demo.c with the mistakes a CI job should catch: a segment and a
 * semaphore set created and never removed (they outlive the process in the kernel), an
 * attachment never detached and a mapping never unmapped. `make demo-leak` runs it under
 * shmtrace with SHMTRACE_EXITCODE=3, then removes what it left behind. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>

static int make_segment(void)
{
    return shmget(IPC_PRIVATE, 65536, IPC_CREAT | 0600);
}

int main(void)
{
    int shmid = make_segment();
    int semid = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    char *shared = shmat(shmid, NULL, 0);
    char *scratch = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (shmid < 0 || semid < 0 || shared == (void *)-1 || scratch == MAP_FAILED) {
        perror("leaky");
        return 1;
    }
    shared[0] = scratch[0] = 1;
    printf("leaky: created segment %d and semaphore set %d\n", shmid, semid);
    return 0;
}
