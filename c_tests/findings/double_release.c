/* SHM007 double-release: shmdt twice, IPC_RMID twice on a segment still attached, IPC_RMID
 * twice on a semaphore set. Fixed: each released once. */
#include "findings.h"

int main(void)
{
    start_tracking();
    int shmid = track_shm(shmget(IPC_PRIVATE, page(), IPC_CREAT | 0600));
    check(shmid >= 0, "shmget");
    char *a = shmat(shmid, NULL, 0);
    check(a != (void *)-1, "shmat");
    char *b = shmat(shmid, NULL, 0);
    check(b != (void *)-1, "shmat");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
#ifndef FIXED
    /* Still attached: the kernel accepts a second IPC_RMID. */
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "second shmctl IPC_RMID");
#endif
    check(shmdt(a) == 0, "shmdt");
#ifndef FIXED
    check(shmdt(a) == -1 && errno == EINVAL, "second shmdt fails with EINVAL");
#endif
    check(shmdt(b) == 0, "shmdt");

    int semid = track_sem(semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    check(semid >= 0, "semget");
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
#ifndef FIXED
    check(semctl(semid, 0, IPC_RMID) == -1, "second semctl IPC_RMID fails");
#endif
    return 0;
}
