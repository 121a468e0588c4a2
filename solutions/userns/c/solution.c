/* Reference solution of exercise userns in C: root without root.

       solution COMMAND [ARG...]

   As Kerrisk's userns_child_exec.c does: the parent clone(2)s a child in a
   new user namespace and writes the child's maps from outside, while the
   child waits on a pipe.  Why wait?  execve(2) gives a process every
   capability of its bounding set only if its uid is 0 in its namespace at
   that moment (capabilities(7)); a child that execs before its uid_map is
   written is uid 65534 there and loses them all.  Why 'deny' first?  Since
   Linux 3.19 an unprivileged process may write gid_map only once
   setgroups(2) is switched off in the namespace.  The parent then waits
   for COMMAND and exits with its status, 128+N if signal N killed it.
   See user_namespaces(7), clone(2), capabilities(7), wait(2). */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int go[2];  /* the parent closes its end when the maps are written */

static void die(const char *what)
{
    fprintf(stderr, "solution: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int child(void *arg)
{
    char **command = arg;
    char byte;

    close(go[1]);
    if (read(go[0], &byte, 1) != 0)  /* end of file: the maps are there */
        _exit(1);
    close(go[0]);
    execvp(command[0], command);
    fprintf(stderr, "solution: %s: %s\n", command[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

/* Write TEXT to /proc/PID/FILE in one write(2), as the kernel requires. */
static void write_file(pid_t pid, const char *file, const char *text)
{
    char path[64];
    int fd;

    snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, file);
    fd = open(path, O_WRONLY);
    if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t) strlen(text))
        die(path);
    close(fd);
}

int main(int argc, char *argv[])
{
    static char stack[1024 * 1024];
    char map[64];
    pid_t pid;
    int status;

    if (argc < 2) {
        fprintf(stderr, "usage: solution COMMAND [ARG...]\n");
        return 2;
    }
    if (pipe(go) == -1)
        die("pipe");
    pid = clone(child, stack + sizeof stack, CLONE_NEWUSER | SIGCHLD, &argv[1]);
    if (pid == -1)
        die("clone(CLONE_NEWUSER)");
    close(go[0]);

    snprintf(map, sizeof map, "0 %d 1\n", (int) getuid());
    write_file(pid, "uid_map", map);
    write_file(pid, "setgroups", "deny");
    snprintf(map, sizeof map, "0 %d 1\n", (int) getgid());
    write_file(pid, "gid_map", map);
    close(go[1]);

    while (waitpid(pid, &status, 0) == -1)
        if (errno != EINTR)
            die("waitpid");
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
