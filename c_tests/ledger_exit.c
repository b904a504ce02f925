/* ledger_exit MODE: leaks a segment and a semaphore set, prints "leaking shm ID sem ID", and
 * ends by MODE: return (from main), exit, _exit or _Exit. `ledger_exit clean` makes and
 * releases the same things and returns. run.py checks the exit report, the exit status under
 * SHMTRACE_EXITCODE, and that /proc/sysvipc still lists what was leaked (then removes it). */
#include "harness.h"
#include "ledger.h"

int main(int argc, char **argv)
{
    static const char *const modes[] = {"return", "exit", "_exit", "_Exit", "clean"};
    int mode = -1;
    for (int i = 0; argc == 2 && i < 5; i++)
        if (strcmp(argv[1], modes[i]) == 0)
            mode = i;
    if (mode < 0) {
        fprintf(stderr, "usage: ledger_exit return|exit|_exit|_Exit|clean\n");
        return 2;
    }
    lg_prog = "ledger_exit";
    lg_case = modes[mode];
    pg = sysconf(_SC_PAGESIZE);

    int shm = new_shm(P(1)), sem = new_sem(2);
    char *a = attach(shm, NULL, 0), *m = map(2, RW, MAP_PRIVATE);
    detach(a);
    unmap(m, 2);
    EXPECT_EQ("shmtrace_leak_count (the segment and the set)", leaks(), 2);
    if (mode == 4) {
        remove_shm(shm);
        remove_sem(sem);
        EXPECT_EQ("shmtrace_leak_count after removing both", leaks(), 0);
        return lg_failures ? 1 : 0;
    }
    untrack(0, shm); /* leaked on purpose: run.py removes them after reading the report */
    untrack(1, sem);
    printf("leaking shm %d sem %d\n", shm, sem);
    switch (mode) {
    case 1:
        exit(lg_failures ? 1 : 0);
    case 2:
        _exit(lg_failures ? 1 : 0);
    case 3:
        _Exit(lg_failures ? 1 : 0);
    }
    return lg_failures ? 1 : 0;
}
