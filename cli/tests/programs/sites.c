/* sites: leaves a segment (created in a helper), an attachment and a mapping, each made on a
 * known line, and exits with status 3. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

static int make_segment(void)
{
    return shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:shmget */
}

int main(void)
{
    int shm = make_segment();
    if (shm < 0) {
        perror("sites: shmget");
        return 1;
    }
    printf("shm %d\n", shm);
    fflush(stdout);
    void *at = shmat(shm, NULL, SHM_RDONLY); /* LINE:shmat */
    void *map = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* LINE:mmap */
    if (at == (void *)-1 || map == MAP_FAILED) {
        perror("sites: shmat/mmap");
        return 1;
    }
    return 3;
}
