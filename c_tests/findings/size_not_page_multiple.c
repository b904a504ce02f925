/* SHM011 size-not-page-multiple: a 100-byte segment. Fixed: one page. */
#include "findings.h"

int main(void)
{
    start_tracking();
#ifdef FIXED
    size_t size = (size_t)page();
#else
    size_t size = 100;
#endif
    int shmid = track_shm(shmget(IPC_PRIVATE, size, IPC_CREAT | 0600));
    check(shmid >= 0, "shmget");
    check(shmctl(shmid, IPC_RMID, NULL) == 0, "shmctl IPC_RMID");
    return 0;
}
