/* SHM002 create-without-excl: IPC_CREAT alone on a fixed key. Fixed: IPC_CREAT|IPC_EXCL. */
#include "findings.h"

#ifdef FIXED
#define FLAGS (IPC_CREAT | IPC_EXCL | 0600)
#else
#define FLAGS (IPC_CREAT | 0600)
#endif

int main(void)
{
    start_tracking();
    int shmid = track_shm(shmget(unique_key(1), page(), FLAGS));
    check(shmid >= 0, "shmget");
    int semid = track_sem(semget(unique_key(2), 1, FLAGS));
    check(semid >= 0, "semget");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    return 0;
}
