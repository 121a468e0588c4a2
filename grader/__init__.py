"""The nslab grader: runs students' solutions in sandboxes and judges what the kernel saw.

    feedback    statuses, and Fail: what was expected, what was seen, a hint
    observe     the kernel's view of a process, read from outside (/proc, nsenter)
    sandbox     the grading sandbox: namespaces, a cgroup, hidden folders, a hook before exec
    session     talking to a run: the pty, pexpect, the transcript, how it ended
    engine      checks (@exercise.check(points, title)), trials, grading a workspace
    exercises/  one module per exercise of EXERCISES.md
    hooks       ways a check can start a solution (as another user, as a PID 1)
    report      text, JSON, JUnit XML, Gradescope, CSV
    selftest/   starters score 0, references full marks, mutants fail their checks
    cli         the grader command

How to write an exercise, a check and a mutant: grader/README.md.
"""
