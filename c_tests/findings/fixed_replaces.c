/* SHM004 fixed-replaces-live: MAP_FIXED over a live read-write mapping, and shmat with
 * SHM_REMAP over a live attachment. Fixed: the correct idiom, address space reserved with
 * PROT_NONE and mapped over (MAP_FIXED, SHM_REMAP) inside the reservation. */
#include "findings.h"

int main(void)
{
    start_tracking();
    size_t len = (size_t)page();
#ifdef FIXED
    int prot = PROT_NONE;
#else
    int prot = PROT_READ | PROT_WRITE;
#endif
    char *p = mmap(NULL, 2 * len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(p != MAP_FAILED, "mmap");
    char *q = mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    check(q == p, "mmap MAP_FIXED");

    int shmid = track_shm(shmget(IPC_PRIVATE, len, IPC_CREAT | 0600));
    check(shmid >= 0, "shmget");
#ifdef FIXED
    /* Over the reserved (PROT_NONE) second page. */
    char *at = p + len;
#else
    char *first = shmat(shmid, NULL, 0);
    check(first != (void *)-1, "shmat");
    char *at = first;
#endif
    char *a = shmat(shmid, at, SHM_REMAP);
    check(a == at, "shmat SHM_REMAP");
    check(shmdt(a) == 0, "shmdt");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    check(munmap(p, 2 * len) == 0, "munmap");
    return 0;
}
