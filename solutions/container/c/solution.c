/* Exercise container in C: all of it together, with clone(2).
 *
 *     solution ROOTFS HOSTNAME COMMAND [ARG...]
 *
 * clone(2) makes the child and its six namespaces in one call: the child is
 * born as PID 1 of the new PID namespace (no unshare-then-fork dance).  The
 * child builds the container in the order the kernel needs, then becomes
 * an init (exercise pid1): it forks COMMAND, forwards signals to it, reaps
 * every child, and exits with COMMAND's status.  The parent waits for it.
 *
 * See clone(2), pivot_root(2), mount_namespaces(7), pid_namespaces(7),
 * netdevice(7) (SIOCSIFFLAGS), sigwaitinfo(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STACK_SIZE (1024 * 1024)

struct args {
    const char *rootfs, *hostname;
    char **command;
};

static void die(const char *what)
{
    fprintf(stderr, "solution: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int status_of(int wstatus)   /* as a shell reports it */
{
    return WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : WEXITSTATUS(wstatus);
}

static void loopback_up(void)
{
    struct ifreq ifr = { .ifr_name = "lo" };
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s == -1 || ioctl(s, SIOCGIFFLAGS, &ifr) == -1)
        die("SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) == -1)
        die("SIOCSIFFLAGS lo");
    close(s);
}

static void build(const struct args *a)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
        die("make / private");
    if (sethostname(a->hostname, strlen(a->hostname)) == -1)
        die("sethostname");
    loopback_up();
    if (mount(a->rootfs, a->rootfs, NULL, MS_BIND | MS_REC, NULL) == -1)
        die("bind ROOTFS");
    if (chdir(a->rootfs) == -1)
        die("chdir ROOTFS");
    if (syscall(SYS_pivot_root, ".", ".") == -1)     /* old root stacked on top */
        die("pivot_root");
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
        die("mount proc");                           /* we are PID 1: our proc */
    if (umount2(".", MNT_DETACH) == -1)              /* the old root, lazily */
        die("umount old root");
    if (chdir("/") == -1)
        die("chdir /");
}

static int init(char **command)
{
    sigset_t watched;
    sigemptyset(&watched);
    int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++)
        sigaddset(&watched, forwarded[i]);
    sigaddset(&watched, SIGCHLD);
    sigprocmask(SIG_BLOCK, &watched, NULL);          /* taken with sigwaitinfo */

    pid_t child = fork();
    if (child == -1)
        die("fork");
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &watched, NULL);
        execvp(command[0], command);
        fprintf(stderr, "solution: %s: %s\n", command[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t info;
        if (sigwaitinfo(&watched, &info) == -1)
            continue;
        if (info.si_signo != SIGCHLD) {
            kill(child, info.si_signo);
            continue;
        }
        int wstatus;
        pid_t pid;
        while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)   /* every child, orphans too */
            if (pid == child)
                return status_of(wstatus);
    }
}

static int container(void *arg)
{
    const struct args *a = arg;
    build(a);
    return init(a->command);
}

int main(int argc, char *argv[])
{
    if (argc < 4) {
        fprintf(stderr, "usage: solution ROOTFS HOSTNAME COMMAND [ARG...]\n");
        return 2;
    }
    char *rootfs = realpath(argv[1], NULL);
    if (!rootfs)
        die(argv[1]);
    struct args a = { rootfs, argv[2], &argv[3] };
    char *stack = malloc(STACK_SIZE);
    if (!stack)
        die("malloc");
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
              | CLONE_NEWCGROUP | SIGCHLD;
    pid_t child = clone(container, stack + STACK_SIZE, flags, &a);   /* the stack grows down */
    if (child == -1)
        die("clone");
    signal(SIGINT, SIG_IGN);                         /* the terminal's ^C is COMMAND's */
    signal(SIGQUIT, SIG_IGN);
    int wstatus;
    while (waitpid(child, &wstatus, 0) == -1)
        if (errno != EINTR)
            die("waitpid");
    return status_of(wstatus);
}
