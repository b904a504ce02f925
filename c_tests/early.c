/* early: linked against libearly.so, whose constructor calls hooks before the shim is
 * initialized; then main calls hooks as usual. */
#include "harness.h"

#include "libearly.h"

int main(void)
{
    expect_eq("calls made by libearly's constructor", early_calls_made(), 7);
    int shm = CALL_INT("main_shmget", shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    expect_ok("main: shmget", shm >= 0);
    expect_eq("main: shmctl IPC_RMID", rmid_shm("main_rmid", shm), 0);
    return 0;
}
