/* chain_first: creates a segment it never removes, then execs chain_second (argv[1]): the
 * segment belongs to this program, what the second program creates belongs to it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: chain_first PATH_OF_CHAIN_SECOND\n");
        return 2;
    }
    int shm = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600); /* LINE:shmget */
    if (shm < 0) {
        perror("chain_first: shmget");
        return 1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);
    execl(argv[1], argv[1], (char *)NULL);
    perror("chain_first: execl");
    return 1;
}
