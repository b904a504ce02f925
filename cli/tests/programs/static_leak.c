/* static_leak: built with -static, so the shim is never loaded; creates a 12345-byte segment
 * it never removes and prints "shm ID". */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    int shm = shmget(IPC_PRIVATE, 12345, IPC_CREAT | 0600);
    printf("shm %d\n", shm);
    return shm < 0;
}
