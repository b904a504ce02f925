/* SHM008 use-after-remove: semop and semctl on a set this process removed, shmat of a segment
 * it removed. Fixed: everything done before the removal. */
#include "findings.h"

static void use(int semid, int shmid)
{
    struct sembuf op = {0, 1, 0};
    int r = semop(semid, &op, 1);
    int v = semctl(semid, 0, GETVAL);
    char *a = shmat(shmid, NULL, 0);
    if (a != (void *)-1)
        shmdt(a);
    printf("semop %d getval %d\n", r, v);
}

int main(void)
{
    start_tracking();
    int semid = track_sem(semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
    check(semid >= 0, "semget");
    int shmid = track_shm(shmget(IPC_PRIVATE, page(), IPC_CREAT | 0600));
    check(shmid >= 0, "shmget");
#ifdef FIXED
    use(semid, shmid);
#endif
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
#ifndef FIXED
    use(semid, shmid);
#endif
    return 0;
}
