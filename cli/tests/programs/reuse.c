/* reuse: creates a semaphore set (logged), then, out of the shim's sight (raw system calls),
 * removes it, creates another set with another key and size that the kernel gives the same
 * id (kernel.sem_next_id: run it in an IPC namespace of its own, as root), and operates on
 * it. Prints "sem ID" for both, and "reused" when the ids are equal. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    int first = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
    if (first < 0) {
        perror("reuse: semget");
        return 1;
    }
    printf("sem %d\n", first);
    if (syscall(SYS_semctl, first, 0, IPC_RMID, 0) != 0) {
        perror("reuse: semctl");
        return 1;
    }
    FILE *next = fopen("/proc/sys/kernel/sem_next_id", "w");
    if (next == NULL) {
        perror("reuse: sem_next_id");
        return 1;
    }
    fprintf(next, "%d\n", first);
    fclose(next);
    int second = (int)syscall(SYS_semget, 0x5eed, 3, IPC_CREAT | 0600);
    if (second < 0) {
        perror("reuse: raw semget");
        return 1;
    }
    printf("sem %d\n", second);
    struct sembuf up = {0, 1, 0};
    if (syscall(SYS_semop, second, &up, 1) != 0) {
        perror("reuse: raw semop");
        return 1;
    }
    if (second == first) {
        printf("reused\n");
    }
    return 0;
}
