/* SHM005 shmdt-not-attachment: shmdt of an address inside an attachment. Fixed: the address
 * shmat returned. */
#include "findings.h"

int main(void)
{
    start_tracking();
    int shmid = track_shm(shmget(IPC_PRIVATE, 2 * page(), IPC_CREAT | 0600));
    check(shmid >= 0, "shmget");
    char *a = shmat(shmid, NULL, 0);
    check(a != (void *)-1, "shmat");
#ifndef FIXED
    check(shmdt(a + page()) == -1 && errno == EINVAL, "shmdt inside fails with EINVAL");
#endif
    check(shmdt(a) == 0, "shmdt");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    return 0;
}
