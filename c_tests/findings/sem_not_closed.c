/* SHM014 sem-not-closed: a named semaphore opened twice (glibc counts the opens of one
 * mapping) and closed once, then unlinked: still open at exit. Fixed: closed twice. */
#include "findings.h"

int main(void)
{
    start_tracking();
    const char *name = tracked_sem_name();
    sem_t *sem = sem_open(name, O_CREAT | O_EXCL, 0600, 1);
    check(sem != SEM_FAILED, "sem_open");
    sem_t *again = sem_open(name, 0);
    check(again == sem, "sem_open again: the same semaphore");
    check(sem_wait(again) == 0 && sem_post(sem) == 0, "sem_wait, sem_post");
    check(sem_close(again) == 0, "sem_close");
#ifdef FIXED
    check(sem_close(sem) == 0, "sem_close the first open");
#endif
    check(sem_unlink(name) == 0, "sem_unlink");
    return 0;
}
