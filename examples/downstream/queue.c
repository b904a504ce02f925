#include "queue.h"

#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

#define SLOTS 64

struct ring {
    int head, tail;
    int slot[SLOTS];
};

struct queue {
    int shmid;
    struct ring *ring;
};

struct queue *queue_open(void)
{
    struct queue *q = malloc(sizeof *q);
    if (!q)
        return NULL;
    q->shmid = shmget(IPC_PRIVATE, sizeof(struct ring), IPC_CREAT | IPC_EXCL | 0600);
    q->ring = q->shmid < 0 ? (void *)-1 : shmat(q->shmid, NULL, 0);
    if (q->ring == (void *)-1) {
        free(q);
        return NULL;
    }
    q->ring->head = q->ring->tail = 0;
    return q;
}

int queue_push(struct queue *q, int value)
{
    if (q->ring->tail - q->ring->head == SLOTS)
        return -1;
    q->ring->slot[q->ring->tail++ % SLOTS] = value;
    return 0;
}

int queue_pop(struct queue *q, int *value)
{
    if (q->ring->head == q->ring->tail)
        return -1;
    *value = q->ring->slot[q->ring->head++ % SLOTS];
    return 0;
}

void queue_close(struct queue *q)
{
    shmdt(q->ring);
#ifdef FIXED
    shmctl(q->shmid, IPC_RMID, NULL);
#endif
    /* Without FIXED: the deliberate bug. The segment is never removed and outlives the
     * process; every test run leaves one more behind in the kernel. */
    free(q);
}
