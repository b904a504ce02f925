/* stripped_lib: a shared library (stripped in the test) whose exported function creates a
 * segment it never removes. */
#include <sys/ipc.h>
#include <sys/shm.h>

int stripped_make_segment(void)
{
    return shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600); /* LINE:shmget */
}
