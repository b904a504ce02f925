/* A tiny work queue in System V shared memory: the kind of code a downstream project has. */
#ifndef QUEUE_H
#define QUEUE_H

struct queue;

struct queue *queue_open(void);
int queue_push(struct queue *q, int value);
int queue_pop(struct queue *q, int *value);
/* Moves the items to a fresh segment, from the head on (0, or -1 on failure). */
int queue_compact(struct queue *q);
void queue_close(struct queue *q);

#endif
