/* Reference solution of exercise pid1 in C: an init that reaps.

       solution COMMAND [ARG...]

   As PID 1 of a PID namespace we adopt every orphan, which stays a zombie
   until we wait(2) for it, and we receive only the signals we handle.  As
   tini does, we block SIGCHLD and the signals to forward, and take them one
   at a time with sigwaitinfo(2): a blocked signal is never dropped for an
   init, and a SIGCHLD that arrives while we reap stays pending.  When
   COMMAND ends we exit with its status (128+N for signal N); the kernel
   then kills whatever else is left in the namespace.
   See pid_namespaces(7), sigwaitinfo(2), waitpid(2). */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

/* Reap every ended child; return COMMAND's exit status if it was one, else -1. */
static int reap(pid_t command)
{
    int status = -1, ws;
    pid_t pid;

    while ((pid = waitpid(-1, &ws, WNOHANG)) > 0)
        if (pid == command)
            status = WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws);
    return status;
}

int main(int argc, char *argv[])
{
    sigset_t waited, old;
    siginfo_t info;
    pid_t command;
    int status;

    if (argc < 2) {
        fprintf(stderr, "usage: %s COMMAND [ARG...]\n", argv[0]);
        return 2;
    }
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        sigaddset(&waited, forwarded[i]);
    sigprocmask(SIG_BLOCK, &waited, &old);

    command = fork();
    if (command == -1) {
        perror("fork");
        return 1;
    }
    if (command == 0) {                 /* COMMAND starts with the mask we were given */
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[1], &argv[1]);
        perror(argv[1]);
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        if (sigwaitinfo(&waited, &info) == -1)
            continue;                   /* EINTR */
        if (info.si_signo != SIGCHLD)
            kill(command, info.si_signo);
        status = reap(command);
        if (status != -1)
            return status;
    }
}
