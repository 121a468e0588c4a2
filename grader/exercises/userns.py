"""Exercise 6, ``userns``: root without root (EXERCISES.md, section 6).

    solution COMMAND [ARG...]

    The grader runs solution as an unprivileged user with uid U and gid G.
    solution runs COMMAND in a new user namespace where COMMAND has uid 0
    and gid 0, mapped to U and G outside: /proc/self/uid_map reads `0 U 1`
    and /proc/self/gid_map reads `0 G 1`. Files that COMMAND creates are
    owned by U and G outside. COMMAND's effective capabilities inside its
    namespace are its whole bounding set (it can, for example, create a UTS
    namespace and set a hostname there). The exit status of solution is
    COMMAND's.

Each check is one clause of that text.  U and G are drawn for every run
(no user or group of the machine has them, and they are not 65534), the
solution runs as U:G with no supplementary groups (grader.hooks.as_user),
in the sandbox, from a copy of its folder that U owns.  COMMAND is a shell
that says it is ready and then waits; while it waits the grader reads the
kernel's view of it from outside (grader/credentials.py): its namespace
links, its ids as the machine sees them and as its own namespace sees them,
its maps as it would read them itself (nsenter --user), its capabilities,
the owner of the file it made, the hostname of the UTS namespace it made.

See user_namespaces(7), capabilities(7), unshare(2), proc(5) (uid_map,
setgroups), and wait(2) for exit statuses.
"""

from __future__ import annotations

import shutil

from .. import credentials, observe
from ..credentials import (
    capability_names,
    find_command,
    id_map,
    ids,
    read_inside,
    show_map,
    start_as_user,
    start_waiting,
    waited,
    waiting_command,
)
from ..engine import Exercise, Trial
from ..feedback import Fail
from ..status import exit_code_check, signal_status_check

exercise = Exercise("userns", "root without root", tools=("nsenter", "unshare", "hostname"),
                    namespaces=("user",))

HINT_EXEC = ("after the namespace and its maps are made, run COMMAND with its arguments as they "
             "are: os.execvp(command[0], command)")
HINT_ORDER = ("unshare(CLONE_NEWUSER) first, then write /proc/self/uid_map ('0 U 1'), 'deny' to "
              "/proc/self/setgroups, /proc/self/gid_map ('0 G 1'), and only then exec COMMAND "
              "(lessons/07-user.ipynb)")


@exercise.check(1, "runs COMMAND")
def runs_command(trial: Trial) -> None:
    """"solution runs COMMAND"

    COMMAND, a shell with a random $0 that waits, is found by its exact
    argument vector among the sandbox's processes (its output is not needed:
    the contract does not say where it goes).
    """
    start_waiting(trial, HINT_EXEC)


@exercise.check(1, "passes COMMAND's arguments unchanged", needs=[runs_command])
def arguments_unchanged(trial: Trial) -> None:
    """"solution COMMAND [ARG...]"

    Each ARG reaches COMMAND as it is: a process in the sandbox runs
    COMMAND with exactly its arguments, random words among them, one with a
    space, "*", an empty word and one starting with "-".
    """
    words = [trial.token(), f"two {trial.token(4)}", "*", "", f"-{trial.token(3)}"]
    command = waiting_command(f"userns-{trial.token()}", "", *words)
    run, _, _ = start_as_user(trial, *command)
    find_command(run, command, hint="pass every ARG as its own argument, unchanged, without a shell in "
                              "between: spaces, '*', an empty word and a leading '-' must all arrive")


@exercise.check(2, "COMMAND runs in a new user namespace", needs=[runs_command])
def new_user_namespace(trial: Trial) -> None:
    """"solution runs COMMAND in a new user namespace"

    COMMAND's /proc/PID/ns/user, read from outside while it waits, is not the caller's (the
    sandbox's PID 1).
    """
    run, pid, _, _ = start_waiting(trial, HINT_EXEC)
    inside, outside = observe.namespace(pid, "user"), observe.namespace(run.init_pid, "user")
    if inside == outside:
        raise Fail("COMMAND runs in the caller's user namespace",
                   expected=f"a user namespace other than the caller's {outside}",
                   seen=f"/proc/PID/ns/user of COMMAND is {inside}",
                   hint="call unshare(CLONE_NEWUSER) in the process that then runs COMMAND (or "
                        "clone(2) a child with it), not in a helper that ends")


@exercise.check(2, "COMMAND has uid 0 and gid 0, which are U and G outside", needs=[runs_command])
def root_inside(trial: Trial) -> None:
    """"where COMMAND has uid 0 and gid 0, mapped to U and G outside"

    The Uid and Gid lines of COMMAND's /proc/PID/status, read in its own user namespace
    (nsenter --user), are all 0; read from outside, all U and G (the machine's ids
    translated to the sandbox's, in whose user namespace the solution runs).
    """
    run, pid, uid, gid = start_waiting(trial, HINT_EXEC)
    inside = read_inside(pid, f"/proc/{pid}/status")
    outside = "\n".join(f"{name}: " + " ".join(str(run.ids.inside(int(n)))
                                                for n in (observe.status_field(pid, name) or "").split())
                        for name in ("Uid", "Gid"))
    if inside is None:
        raise Fail("the grader could not read COMMAND's ids in its user namespace")
    seen_in = f"uid {ids(inside, 'Uid')}, gid {ids(inside, 'Gid')}"
    if ids(inside, "Uid") != [0] * 4 or ids(inside, "Gid") != [0] * 4:
        raise Fail("COMMAND is not uid 0 and gid 0 in its user namespace",
                   expected="uid [0, 0, 0, 0], gid [0, 0, 0, 0] (real, effective, saved, file system)",
                   seen=f"{seen_in} (65534 is the overflow id: an id without a map)",
                   hint="map uid 0 inside to U outside, and gid 0 to G: " + HINT_ORDER)
    if ids(outside, "Uid") != [uid] * 4 or ids(outside, "Gid") != [gid] * 4:
        raise Fail("outside its namespace, COMMAND is not U and G",
                   expected=f"uid {[uid] * 4}, gid {[gid] * 4}", seen=outside.replace("\n", ", "),
                   hint="map 0 to the solution's own uid and gid (os.getuid(), os.getgid())")


@exercise.check(2, "/proc/self/uid_map reads '0 U 1'", needs=[runs_command])
def uid_map(trial: Trial) -> None:
    """"/proc/self/uid_map reads 0 U 1"

    COMMAND's uid_map, read in its own user namespace (as COMMAND reads /proc/self/uid_map:
    the second column is then relative to the parent namespace), is the one line 0 U 1.
    """
    _, pid, uid, _ = start_waiting(trial, HINT_EXEC)
    seen = id_map(read_inside(pid, f"/proc/{pid}/uid_map"))
    if seen != [(0, uid, 1)]:
        raise Fail("COMMAND's uid_map is not '0 U 1'", expected=f"0 {uid} 1", seen=show_map(seen),
                   hint="write '0 U 1' (U: the solution's uid, os.getuid()) to the uid_map of the "
                        "new namespace's process, once, before COMMAND starts: " + HINT_ORDER)


@exercise.check(2, "/proc/self/gid_map reads '0 G 1'", needs=[runs_command])
def gid_map(trial: Trial) -> None:
    """"/proc/self/gid_map reads 0 G 1"

    COMMAND's gid_map, read in its own user namespace, is the one line 0 G 1. The kernel
    takes that map from an unprivileged process only after 'deny' was written to
    /proc/PID/setgroups: a failure shows what setgroups reads.
    """
    _, pid, _, gid = start_waiting(trial, HINT_EXEC)
    seen = id_map(read_inside(pid, f"/proc/{pid}/gid_map"))
    setgroups = (read_inside(pid, f"/proc/{pid}/setgroups") or "?").strip()
    if seen != [(0, gid, 1)]:
        raise Fail("COMMAND's gid_map is not '0 G 1'", expected=f"0 {gid} 1",
                   seen=f"{show_map(seen)}; /proc/PID/setgroups reads '{setgroups}'",
                   hint="write 'deny' to /proc/PID/setgroups first: without it the kernel refuses "
                        "an unprivileged gid_map (EPERM, user_namespaces(7)); then '0 G 1' (G: "
                        "os.getgid()) to gid_map: " + HINT_ORDER)


@exercise.check(1, "files that COMMAND creates are owned by U and G outside", needs=[runs_command])
def files_owned_outside(trial: Trial) -> None:
    """"Files that COMMAND creates are owned by U and G outside."

    COMMAND writes a file with a random name in its working directory; the grader lstat(2)s
    it from outside (and translates the owner to the sandbox's ids).
    """
    name = f"made-by-command-{trial.token()}"
    run, pid, uid, gid = start_waiting(trial, HINT_EXEC, before=f"echo {trial.token()} > {name}; ")
    owner = credentials.owner(pid, name, run.ids)
    if owner is None:
        raise Fail(f"COMMAND could not create the file {name} in its working directory",
                   hint="keep the working directory the grader gave you (a scratch folder that "
                        "everyone may write to)")
    if owner != (uid, gid):
        raise Fail("the file COMMAND created is not owned by U and G outside",
                   expected=f"uid {uid}, gid {gid}", seen=f"uid {owner[0]}, gid {owner[1]}",
                   hint="COMMAND must run as the solution's own user, in a user namespace that maps "
                        "0 to it")


@exercise.check(2, "COMMAND's effective capabilities are its whole bounding set", needs=[runs_command])
def all_capabilities(trial: Trial) -> None:
    """"COMMAND's effective capabilities inside its namespace are its whole bounding set"

    CapEff of COMMAND's /proc/PID/status equals its CapBnd (bit masks, the same from
    everywhere; they count in COMMAND's own user namespace).
    """
    _, pid, _, _ = start_waiting(trial, HINT_EXEC)
    caps = credentials.capabilities(pid)
    if caps is None:
        raise Fail("COMMAND ended before the grader could read its capabilities", hint=HINT_EXEC)
    effective, bounding = caps
    if effective != bounding:
        raise Fail("COMMAND's effective capabilities are not its bounding set",
                   expected=f"CapEff {bounding:016x} (as CapBnd)",
                   seen=f"CapEff {effective:016x}: missing {capability_names(bounding & ~effective)}",
                   hint="execve(2) gives a process all capabilities of its bounding set only if it "
                        "is uid 0 in its namespace at that moment: write the maps *before* COMMAND "
                        "is exec'd (a child that execs at once, and a parent that maps it later, "
                        "is too late: capabilities(7), 'Capabilities and execution of programs "
                        "by root')")


@exercise.check(1, "COMMAND can create a UTS namespace and set a hostname there",
                needs=[runs_command])
def can_set_hostname(trial: Trial) -> None:
    """"it can, for example, create a UTS namespace and set a hostname there"

    COMMAND is unshare(1) --uts running a shell that sets a random hostname; the grader
    reads that shell's UTS namespace and hostname from outside (nsenter --uts).
    """
    hint = ("COMMAND (unshare --uts, then hostname) needs CAP_SYS_ADMIN in its user namespace: "
            + HINT_ORDER)
    hostname = trial.hostname()
    shell = waiting_command(f"userns-{trial.token()}", 'hostname "$1"; ', hostname)
    run, _, _ = start_as_user(trial, shutil.which("unshare") or "/usr/bin/unshare", "--uts", *shell)
    pid = find_command(run, shell, hint)
    waited(pid)
    namespace, seen = observe.namespace(pid, "uts"), observe.hostname(pid)
    if namespace == observe.namespace(run.init_pid, "uts") or seen != hostname:
        raise Fail("COMMAND's new UTS namespace does not have the hostname it set",
                   expected=f"a new UTS namespace named {hostname}",
                   seen=f"{namespace} named {seen!r}; the output: {run.transcript.tail(300)}",
                   hint=hint)


@exercise.check(2, "the exit status is COMMAND's", needs=[runs_command])
def exit_status(trial: Trial) -> None:
    """"The exit status of solution is COMMAND's."

    grader/status.py: COMMAND exits with a code it draws itself; the kernel reports how it
    ended; the solution's status must be that code.
    """
    exit_code_check(trial, lambda command: start_as_user(trial, *command)[0], exec_hint=HINT_EXEC)


@exercise.check(1, "killed by signal N, COMMAND gives exit status 128+N", needs=[runs_command])
def signal_status(trial: Trial) -> None:
    """"or 128+N if COMMAND was killed by signal N (as a shell reports it; a solution that execs
    COMMAND and so dies by the same signal meets this too)."

    grader/status.py: the grader kills COMMAND with a usual signal, then a rarer one; the
    solution's status must be 128+N, or death by N.
    """
    signal_status_check(trial, lambda command: start_as_user(trial, *command)[0], exec_hint=HINT_EXEC)
