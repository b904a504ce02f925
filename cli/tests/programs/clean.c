/* clean: creates and removes a segment, maps and unmaps, and exits with the status given as
 * argv[1] (default 0). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

int main(int argc, char **argv)
{
    int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (shm < 0 || shmctl(shm, IPC_RMID, NULL) != 0) {
        perror("clean: shm");
        return 1;
    }
    void *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED || munmap(map, 4096) != 0) {
        perror("clean: mmap");
        return 1;
    }
    return argc > 1 ? atoi(argv[1]) : 0;
}
