/* liblate.so: hooked calls made late in a process's life; see late.c. */
#ifndef LATE_H
#define LATE_H

/* Calls every hook once, plus four that must fail, and prints each outcome on stdout with
 * write(2) (stdio may be gone). `who` names the caller in the output; each `who` maps a
 * distinct length, 4096 * (16 + k), so run.py can find its calls in the log. */
void late_calls(const char *who, int k);

/* The status the last exit handler ends the process with through _exit (-1: it does not). */
void late_exit_with(int status);

#endif
