/* Exercise timens in C: a clock of your own.
 *
 *     solution SECONDS COMMAND [ARG...]
 *
 * unshare(CLONE_NEWTIME) makes a time namespace for our *children*; its
 * offsets go into /proc/self/timens_offsets before anyone enters it (the
 * first to enter freezes them); fork(2) then starts COMMAND inside.
 * SECONDS may be large: parse it as a 64-bit number, not an int.
 * See time_namespaces(7).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static void die(const char *what)
{
    fprintf(stderr, "solution: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char *argv[])
{
    if (argc < 3) {
        fprintf(stderr, "usage: solution SECONDS COMMAND [ARG...]\n");
        return 2;
    }
    char *end;
    errno = 0;
    long long seconds = strtoll(argv[1], &end, 10);
    if (errno || *end || seconds < 0) {
        fprintf(stderr, "solution: SECONDS must be a non-negative integer\n");
        return 2;
    }

    if (unshare(CLONE_NEWTIME) == -1)
        die("unshare(CLONE_NEWTIME)");

    /* Both lines in one write(2): the kernel takes all or nothing. */
    char offsets[128];
    int len = snprintf(offsets, sizeof offsets, "monotonic %lld 0\nboottime %lld 0\n",
                       seconds, seconds);
    int fd = open("/proc/self/timens_offsets", O_WRONLY);
    if (fd == -1)
        die("open /proc/self/timens_offsets");
    if (write(fd, offsets, len) != len)
        die("write /proc/self/timens_offsets");
    close(fd);

    pid_t child = fork();
    if (child == -1)
        die("fork");
    if (child == 0) {               /* born in the new time namespace */
        execvp(argv[2], &argv[2]);
        fprintf(stderr, "solution: %s: %s\n", argv[2], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }

    signal(SIGINT, SIG_IGN);        /* the terminal's ^C is COMMAND's */
    signal(SIGQUIT, SIG_IGN);
    int status;
    while (waitpid(child, &status, 0) == -1)
        if (errno != EINTR)
            die("waitpid");
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}
