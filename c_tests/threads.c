/* threads: several threads call the hooks at the same time. */
#include "harness.h"

#define THREADS 6
#define ROUNDS 40

static int sem; /* one semaphore everyone takes and gives back */

static void *worker(void *arg)
{
    long failures = 0;
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        char *p = CALL_PTR(NULL, mmap, NULL, 4096, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        failures += p == MAP_FAILED;
        failures += CALL_INT(NULL, munmap, p, 4096) != 0;

        int shm = CALL_INT(NULL, shmget, IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        failures += shm < 0;
        failures += rmid_shm(NULL, shm) != 0;

        struct sembuf op = {.sem_num = 0, .sem_op = -1, .sem_flg = SEM_UNDO};
        failures += CALL_BLOCKING(NULL, semop, sem, &op, 1) != 0;
        op.sem_op = 1;
        failures += CALL_BLOCKING(NULL, semop, sem, &op, 1) != 0;
        failures += CALL_INT(NULL, munmap, (char *)&op + 1, 4096) != -1; /* EINVAL */
    }
    return (void *)failures;
}

int main(void)
{
    pthread_t t[THREADS];
    long failures = 0;

    sem = CALL_INT(NULL, semget, IPC_PRIVATE, 1, IPC_CREAT | 0600);
    expect_ok("semget", sem >= 0);
    expect_eq("semctl SETVAL", CALL_INT(NULL, semctl, sem, 0, SETVAL, (union semun){.val = 2}), 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        CHECK(pthread_join(t[i], &res) == 0);
        failures += (long)res;
    }
    printf("%d threads x %d rounds\n", THREADS, ROUNDS);
    expect_eq("unexpected outcomes", failures, 0);
    expect_eq("semaphore back to 2", CALL_INT(NULL, semctl, sem, 0, GETVAL), 2);
    expect_eq("semctl IPC_RMID", rmid_sem(NULL, sem), 0);
    return 0;
}
