"""The nslab grader: runs students' solutions in sandboxes and judges what the kernel saw.

    feedback    statuses, and Fail: what was expected, what was seen, a hint
    observe     the kernel's view of a process, read from outside (/proc, nsenter)
    sandbox     the grading sandbox: namespaces, a cgroup, hidden folders, a hook before exec
    session     talking to a run: the pty, pexpect, the transcript, how it ended
    engine      checks (@exercise.check(points, title)), trials, grading a workspace
    exercises/  one module per exercise of EXERCISES.md
    hooks       ways a check can start a solution (as another user, as a PID 1)
    exits       how COMMAND really ended, from the kernel's process events
    seccomp     every call that sets a hostname, handed to the grader (seccomp_unotify)
    listmount   every mount of a namespace, hidden ones too (Linux 6.8)
    report      text, JSON, JUnit XML, Gradescope, CSV
    preload     all of the above, loaded before the first solution runs
    selftest/   starters score 0, references full marks, mutants fail their checks
    cli         the grader command

How to write an exercise, a check and a mutant: grader/README.md.
"""
