/* A forgotten SysV attachment: its segment already removed, its address overwritten (lost);
 * and one kept in a global (still reachable; detached by exit, its segment removed too). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static void *volatile kept;
static void *volatile last;

static void *attach_removed(void)
{
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0)
        exit(2);
    void *p = shmat(id, NULL, 0);
    shmctl(id, IPC_RMID, NULL);
    if (p == (void *)-1)
        exit(2);
    return p;
}

static __attribute__((noinline)) void forget(void)
{
    last = attach_removed(); /* FORGOTTEN */
    last = NULL;
}

int main(void)
{
    forget();
    kept = attach_removed();
    return 0;
}
