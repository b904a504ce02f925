/* A small program that uses shared memory, semaphores and mappings, the way a C service
 * might: a shared counter guarded by a semaphore, a scratch mapping grown with mremap.
 * It removes what it creates; `make demo` shows its log under shmtrace. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <unistd.h>

int main(void)
{
    int shmid = shmget(IPC_PRIVATE, 4096, IPC_CREAT | IPC_EXCL | 0600);
    int semid = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (shmid < 0 || semid < 0) {
        perror("demo: shmget/semget");
        return 1;
    }
    semctl(semid, 0, SETVAL, 1);

    long *counter = shmat(shmid, NULL, 0);
    struct sembuf lock = {0, -1, SEM_UNDO}, unlock = {0, 1, SEM_UNDO};
    semop(semid, &lock, 1);
    *counter += 1;
    semop(semid, &unlock, 1);

    char *scratch = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    scratch = mremap(scratch, 8192, 65536, MREMAP_MAYMOVE);
    strcpy(scratch, "hello");
    munmap(scratch, 65536);

    /* A mistake shmtrace reports faithfully: the kernel says EINVAL. */
    shmctl(shmid + 1000000, IPC_STAT, NULL);

    printf("counter=%ld %s\n", *counter, scratch == MAP_FAILED ? "mremap failed" : "ok");
    shmdt(counter);
    shmctl(shmid, IPC_RMID, NULL);
    semctl(semid, 0, IPC_RMID);
    return 0;
}
