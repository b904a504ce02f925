/*
 * spawned: the program `fork` starts with vfork + exec and with posix_spawn. It calls hooks
 * (counted in the journal: run.py finds its records in the log under its own pid), checks its
 * own ledger when the shim is loaded, and releases everything (its report must be clean).
 *
 *     spawned [SHMID SEMID]    (a segment to attach read-only, a set to read)
 */
#include "hostile.h"

int main(int argc, char **argv)
{
    const char *d;
    hz_init("spawned");
    int shmid = argc > 2 ? atoi(argv[1]) : -1, semid = argc > 2 ? atoi(argv[2]) : -1;
    int have = hz_api_load();

    char *p = COUNTED(MMAP, mmap(NULL, PG(2), PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    MUST(p != MAP_FAILED);
    char *q = COUNTED(MREMAP, mremap(p, PG(2), PG(4), MREMAP_MAYMOVE));
    MUST(q != MAP_FAILED);
    char *a = NULL;
    if (shmid >= 0) {
        a = COUNTED(SHMAT, shmat(shmid, NULL, SHM_RDONLY));
        MUST(a != (void *)-1);
    }
    if (semid >= 0)
        MUST(COUNTED(SEMCTL, semctl(semid, 0, GETVAL)) >= 0);
    if (have) {
        hz_kernel_load();
        EXPECT(!(d = hz_exact_mapping(q, PG(4), SHMTRACE_MAPPING_ANONYMOUS, -1)),
               "spawned: its mapping: %s", d);
        EXPECT(!(d = hz_disagreement_loaded(q, PG(4), 0)), "spawned: its mapping: %s", d);
        if (a)
            EXPECT(!(d = hz_disagreement_loaded(a, PG(1), 0)), "spawned: its attachment: %s",
                   d);
        shmtrace_stats s = hz_stats();
        EXPECT(s.calls[SHMTRACE_CALL_MMAP] == hz_calls[SHMTRACE_CALL_MMAP] &&
                   s.calls[SHMTRACE_CALL_MREMAP] == 1,
               "spawned: its ledger counts %lu mmap, %lu mremap; it made %lu and 1 (nothing "
               "of its parent's may be in it)",
               (unsigned long)s.calls[SHMTRACE_CALL_MMAP],
               (unsigned long)s.calls[SHMTRACE_CALL_MREMAP], hz_calls[SHMTRACE_CALL_MMAP]);
    }
    if (a)
        MUST(COUNTED(SHMDT, shmdt(a)) == 0);
    MUST(COUNTED(MUNMAP, munmap(q, PG(4))) == 0);
    hz_publish();
    return hz_status();
}
