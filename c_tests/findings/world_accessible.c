/* SHM001 world-accessible: a segment, a set, a POSIX shared memory object and a named
 * semaphore created with mode 0666. Fixed: 0600. */
#include "findings.h"

#ifdef FIXED
#define MODE 0600
#else
#define MODE 0666
#endif

int main(void)
{
    start_tracking();
    int shmid = track_shm(shmget(IPC_PRIVATE, page(), IPC_CREAT | MODE));
    check(shmid >= 0, "shmget");
    int semid = track_sem(semget(IPC_PRIVATE, 1, IPC_CREAT | MODE));
    check(semid >= 0, "semget");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    check(semctl(semid, 0, IPC_RMID) == 0, "semctl IPC_RMID");
    const char *name = tracked_shm_name();
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, MODE);
    check(fd >= 0, "shm_open");
    check(close(fd) == 0 && shm_unlink(name) == 0, "shm_unlink");
    const char *sem_name = tracked_sem_name();
    sem_t *sem = sem_open(sem_name, O_CREAT | O_EXCL, MODE, 1);
    check(sem != SEM_FAILED, "sem_open");
    check(sem_close(sem) == 0 && sem_unlink(sem_name) == 0, "sem_unlink");
    return 0;
}
