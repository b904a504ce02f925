/*
 * scenario.h - what the POSIX scenarios (posix.c, memfd.c, namedsem.c) share: one line of
 * stdout per step, identical with and without the shim, and four threads running one body.
 */
#ifndef SCENARIO_H
#define SCENARIO_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* "what = -1 errno=...", "what = 0" or "what = 1": the outcome, never a value that differs
 * between runs. */
static void say(const char *what, long ret) {
    printf("%s = %ld", what, ret < 0 ? -1L : ret == 0 ? 0L : 1L);
    if (ret < 0)
        printf(" errno=%s", strerror(errno));
    printf("\n");
}

/* Runs `body` in four threads at once (each gets its index) and says whether every one
 * returned NULL. */
static void say_threads(void *(*body)(void *)) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, body, (void *)i);
    long bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += r != NULL;
    }
    say("threads", bad ? -1 : 0);
}

#endif
