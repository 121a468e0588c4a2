/* Reference solution of exercise uts in C: your own hostname.

       solution HOSTNAME [COMMAND [ARG...]]

   unshare(CLONE_NEWUTS) gives this process its own copy of the hostname,
   sethostname(2) changes the copy, and execvp(3) replaces this process by
   COMMAND, which so keeps the namespace, the terminal, the standard
   descriptors, and gives its exit status (or its death by a signal) to
   whoever started us.  See uts_namespaces(7), unshare(2), sethostname(2). */

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s HOSTNAME [COMMAND [ARG...]]\n", argv[0]);
        return 2;
    }
    if (unshare(CLONE_NEWUTS) == -1) {
        perror("unshare(CLONE_NEWUTS)");   /* EPERM: needs CAP_SYS_ADMIN */
        return 1;
    }
    if (sethostname(argv[1], strlen(argv[1])) == -1) {
        perror("sethostname");             /* EINVAL: longer than 64 bytes */
        return 1;
    }
    if (argc > 2)
        execvp(argv[2], &argv[2]);
    else
        execl("/bin/sh", "sh", (char *) NULL);
    perror(argc > 2 ? argv[2] : "/bin/sh");   /* as a shell: 127 not found, 126 not runnable */
    return errno == ENOENT ? 127 : 126;
}
