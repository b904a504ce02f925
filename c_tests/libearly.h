#ifndef LIBEARLY_H
#define LIBEARLY_H
/* How many hooked calls libearly's constructor made (4 once it has run). */
int early_calls_made(void);
#endif
