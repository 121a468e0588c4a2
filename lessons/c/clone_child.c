/* clone_child.c: start a child in new namespaces with clone(2), and compare
   with unshare(2).  Used by lesson 01 (lessons/01-overview.ipynb), section 5.

   Build and run:   gcc -Wall -pthread -o clone_child clone_child.c && ./clone_child

   The child is created with CLONE_NEWUSER | CLONE_NEWUTS | CLONE_NEWPID: it
   starts life in a new user namespace (so that no privilege is needed, and
   it has every capability there), a new UTS namespace and a new PID
   namespace, of which it is PID 1.  The parent's own namespaces never change.

   To show the second difference with unshare(2), the parent first starts a
   thread: unshare(CLONE_NEWUSER) then fails with EINVAL (a threaded process
   cannot leave its thread group, and CLONE_NEWUSER implies CLONE_THREAD),
   while clone(2) with the same flag succeeds, since the new namespace is for
   a new, single-threaded process.

   See clone(2), unshare(2), namespaces(7); the model is Kerrisk's
   demo_uts_namespaces.c ("Namespaces in operation, part 2", LWN 2013).
   CLONE_NEWPID needs Linux 2.6.24, CLONE_NEWUSER (unprivileged) 3.8. */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define errExit(msg) do { perror(msg); exit(EXIT_FAILURE); } while (0)

#define STACK_SIZE (1024 * 1024)    /* the child's stack: clone(2) wants one */

static int                          /* the child: runs in the new namespaces */
childFunc(void *arg)
{
    struct utsname uts;

    if (sethostname(arg, strlen(arg)) == -1)    /* its own UTS namespace */
        errExit("sethostname");
    if (uname(&uts) == -1)
        errExit("uname");
    printf("child:  getpid() = %ld, hostname %s, uid %ld (unmapped)\n",
           (long) getpid(), uts.nodename, (long) getuid());
    fflush(stdout);                 /* the child ends with _exit(2): no flush */
    return 0;                       /* the child's exit status */
}

static void *
idle(void *arg)                     /* the parent's second thread */
{
    pause();
    return arg;
}

int
main(void)
{
    pthread_t thread;
    struct utsname uts;
    char *stack;
    pid_t pid;

    errno = pthread_create(&thread, NULL, idle, NULL);
    if (errno != 0)
        errExit("pthread_create");

    if (unshare(CLONE_NEWUSER) == -1)
        printf("parent: unshare(CLONE_NEWUSER) with 2 threads: %s\n", strerror(errno));
    fflush(stdout);                 /* or the child would print our buffer again */

    stack = malloc(STACK_SIZE);
    if (stack == NULL)
        errExit("malloc");

    /* The stack grows down on every architecture Linux runs namespaces on
       (but HP PA-RISC): pass its top.  SIGCHLD: notify us at its end, as
       fork(2) does, so that waitpid(2) works as usual. */
    pid = clone(childFunc, stack + STACK_SIZE,
                CLONE_NEWUSER | CLONE_NEWUTS | CLONE_NEWPID | SIGCHLD, "cloned");
    if (pid == -1)
        errExit("clone");

    if (waitpid(pid, NULL, 0) == -1)    /* the child has printed its line */
        errExit("waitpid");
    printf("parent: clone(CLONE_NEWUSER|CLONE_NEWUTS|CLONE_NEWPID) with 2 threads: "
           "the child was PID %ld here\n", (long) pid);
    if (uname(&uts) == -1)
        errExit("uname");
    printf("parent: hostname %s, my namespaces unchanged\n", uts.nodename);
    exit(EXIT_SUCCESS);
}
