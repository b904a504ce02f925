#include "queue.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
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

int queue_compact(struct queue *q)
{
    /* Moves the items to a fresh segment through a staging buffer. */
    int shmid = shmget(IPC_PRIVATE, sizeof(struct ring), IPC_CREAT | IPC_EXCL | 0600);
    struct ring *ring = shmid < 0 ? (void *)-1 : shmat(shmid, NULL, 0);
    struct ring *staging = mmap(NULL, sizeof *staging, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ring == (void *)-1 || staging == MAP_FAILED)
        return -1;
    int n = 0;
    while (q->ring->head != q->ring->tail)
        staging->slot[n++] = q->ring->slot[q->ring->head++ % SLOTS];
    memcpy(ring->slot, staging->slot, n * sizeof *staging->slot);
    ring->head = 0;
    ring->tail = n;
    shmdt(q->ring);
#ifdef FIXED
    shmctl(q->shmid, IPC_RMID, NULL);
    munmap(staging, sizeof *staging);
#endif
    /* Without FIXED: the deliberate bugs. The old segment is never removed and outlives the
     * process (every test run leaves one more behind in the kernel), and the staging buffer
     * is never unmapped: once this function returns, nothing points at it any more. */
    q->shmid = shmid;
    q->ring = ring;
    return 0;
}

void queue_close(struct queue *q)
{
    shmdt(q->ring);
    shmctl(q->shmid, IPC_RMID, NULL);
    free(q);
}
