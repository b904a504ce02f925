/* SHM015 queue-removed-with-messages: IPC_RMID of a queue that still holds two messages (8
 * bytes): they are lost. Fixed: drained first (msgrcv with IPC_NOWAIT until ENOMSG). */
#include "findings.h"

struct msg {
    long mtype;
    char text[8];
};

int main(void)
{
    start_tracking();
    int msqid = track_msg(msgget(IPC_PRIVATE, IPC_CREAT | 0600));
    check(msqid >= 0, "msgget");
    struct msg m = {1, "abcd"};
    check(msgsnd(msqid, &m, 4, 0) == 0 && msgsnd(msqid, &m, 4, 0) == 0, "msgsnd twice");
#ifdef FIXED
    int drained = 0;
    while (msgrcv(msqid, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0)
        drained++;
    check(errno == ENOMSG && drained == 2, "drained until ENOMSG");
#endif
    check(msgctl(msqid, IPC_RMID, NULL) == 0, "msgctl IPC_RMID");
    printf("ok\n");
    return 0;
}
