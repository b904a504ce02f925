/* libearly.so: its constructor calls hooks before the shim's own constructor has run
 * (early.linked lists libshmtrace before libearly, so libearly is initialized first; with
 * LD_PRELOAD the preloaded shim is initialized after the program's dependencies too).
 * run.py checks that order with LD_DEBUG=files. */
#include "harness.h"

#include "libearly.h"

#include <semaphore.h>

static int calls_made;

__attribute__((constructor)) static void early_calls(void)
{
    int shm = CALL_INT("early_shmget", shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    expect_ok("constructor: shmget", shm >= 0);
    expect_eq("constructor: shmctl IPC_RMID", rmid_shm("early_rmid", shm), 0);
    void *m = CALL_PTR("early_mmap", mmap, NULL, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect_ok("constructor: mmap", m != MAP_FAILED);
    expect_eq("constructor: munmap", CALL_INT("early_munmap", munmap, m, 4096), 0);
    /* sem_open and sem_close have no system call to stand in: the shim looks them up now. */
    char name[64];
    snprintf(name, sizeof name, "/shmtrace-early-%d", (int)getpid());
    sem_t *s = CALL_PTR("early_sem_open", sem_open, name, O_CREAT | O_EXCL, 0600, 1u);
    expect_ok("constructor: sem_open", s != SEM_FAILED);
    expect_eq("constructor: sem_close", CALL_INT("early_sem_close", sem_close, s), 0);
    expect_eq("constructor: sem_unlink", CALL_INT("early_sem_unlink", sem_unlink, name), 0);
    calls_made = 7;
}

int early_calls_made(void)
{
    return calls_made;
}
