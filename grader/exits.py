"""How COMMAND ended, as the kernel reports it: the process events connector.

"The exit status of solution is COMMAND's" is a claim about two processes,
and only two parties learn how COMMAND ended: its parent (often the
solution itself, whose word is being checked) and the kernel.  The grader
asks the kernel.  With the process events connector (cn_proc, Linux
2.6.15) a netlink socket subscribed to CN_IDX_PROC receives an event for
every process that ends on the machine, with its PID (as the initial PID
namespace numbers it, like the grader) and its wait status: the exit code
shifted left by 8, or the number of the signal that killed it.

So the COMMANDs of the status checks end in ways that nobody can know in
advance, the solution included, and that the grader still learns exactly:

    drawn_exit      sleeps a moment, then exits with a code it draws from
                    /dev/urandom (or the shell's $RANDOM): nothing in its
                    arguments says which
    waiting         sleeps until the grader kills it with a signal of the
                    grader's choice, sent straight to COMMAND's process

A solution that reads an exit status out of COMMAND's words, exits before
COMMAND, or kills COMMAND and reports a status of its own choosing, then
fails: COMMAND's real end is on record.

Listening takes CAP_NET_ADMIN in the initial user namespace (the grader is
root).  See the kernel's Documentation/driver-api/connector.rst,
<linux/cn_proc.h>, netlink(7), wait(2), signal(7).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import struct
import time

from .feedback import Fail
from .session import Exit, signal_name

SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>: root may go past rmem_max
BUFFER = 8 << 20  # every process of the machine ends on this socket: room for many

# Signals that end a process by default and that nothing between the grader and
# COMMAND usually changes.  Not SIGINT and SIGQUIT (a shell ignores them in the
# commands it starts in the background), not SIGPIPE and SIGXFSZ (Python ignores
# them, and an ignored signal stays ignored across execve(2)), not SIGKILL (the
# sandbox ends what is left of a run with it), and no signal that dumps core.
USUAL_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGTERM)
OTHER_SIGNALS = (signal.SIGSTKFLT, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR,
                 *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))  # real-time: 34 to 64

# Where a shell draws a random number: coreutils' od(1) reads the kernel's generator
# (dash has no $RANDOM); busybox's sh has $RANDOM (a jail's root file system has no /dev).
URANDOM = "$(od -An -N1 -tu1 /dev/urandom)"
SHELL_RANDOM = "$RANDOM"


def drawn_exit(tag: str, random: str = URANDOM) -> list[str]:
    """A COMMAND that exits, after a moment, with a code from 1 to 255 that it draws.

    The moment lets the grader find its process (by TAG, its $0) before it
    ends.
    """
    return ["/bin/sh", "-c", f"sleep 0.3; exit $(( {random} % 255 + 1 ))", tag]


def waiting(number: int) -> list[str]:
    """A COMMAND that sleeps until a signal ends it: sleep(1) for an hour and NUMBER microseconds.

    The odd duration makes its argument vector one the grader can find; it
    has no child that would outlive it.
    """
    return ["/bin/sleep", f"{3600 + number / 1e6:.6f}"]


class ExitWatch:
    """The kernel's reports of processes that ended, from the moment it is made.

    Use it as a context manager, or close it: the socket receives the end
    of every process of the machine as long as it is open.  (pyroute2 has
    a ProcEventSocket, but it lost about half of the events of a burst of
    short processes here; a plain socket loses none, and shows the layout.)
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                  NETLINK_CONNECTOR)
        try:
            self.sock.bind((0, CN_IDX_PROC))  # the multicast group of process events
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER)
            self.sock.send(_message(PROC_CN_MCAST_LISTEN))  # and tell the connector to send them
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.ended: dict[int, int] = {}  # PID -> wait status

    def end_of(self, pid: int, timeout: float = 5) -> Exit | None:
        """How process PID ended (Exit), or None if it did not end within TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            if pid in self.ended:
                return Exit.from_wait_status(self.ended[pid])
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([self.sock], [], [], min(left, 0.5))

    def _read(self) -> None:
        """Take every event waiting on the socket (one per datagram) and keep the ends."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the buffer overflowed: events were lost
                    raise RuntimeError("the kernel dropped process events (receive buffer full)") from e
                raise
            if len(data) < _EVENT_AT + _EXIT_EVENT.size:
                continue
            what, pid, tgid, status = _EXIT_EVENT.unpack_from(data, _EVENT_AT)
            # One event per thread: a COMMAND's is its main thread's (PID = TGID).
            if what == PROC_EVENT_EXIT and pid == tgid:
                self.ended[pid] = status

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> ExitWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# The messages, from <linux/netlink.h>, <linux/connector.h>, <linux/cn_proc.h>:
#   struct nlmsghdr  { u32 len; u16 type, flags; u32 seq, pid; }
#   struct cn_msg    { u32 idx, val, seq, ack; u16 len, flags; }       then the payload:
#   struct proc_event { u32 what, cpu; u64 timestamp_ns;
#                       (exit) u32 pid, tgid, exit_code, exit_signal, parent_pid, parent_tgid; }
NETLINK_CONNECTOR, NLMSG_DONE = 11, 3
CN_IDX_PROC = CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXIT = 0x80000000
_NLMSG_HDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EXIT_EVENT = struct.Struct("=I4x8xIII")  # what, (cpu, timestamp,) pid, tgid, exit_code
_EVENT_AT = _NLMSG_HDR.size + _CN_MSG.size


def _message(operation: int) -> bytes:
    """A netlink message that carries one connector message with OPERATION as its payload."""
    payload = struct.pack("=I", operation)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG_HDR.pack(_NLMSG_HDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


# Judging -----------------------------------------------------------------------------

HINT_WAIT = ("wait for COMMAND to end before the solution ends: the sandbox kills whatever "
             "is left of a run when the solution has ended")


def expect_status_of(command: Exit | None, solution: Exit, hint: str) -> None:
    """Fail unless COMMAND ended by itself with an exit code and SOLUTION reported it."""
    if command is None:
        raise RuntimeError("the kernel's report of COMMAND's end never came")
    if command.code is None:
        raise Fail(f"COMMAND did not get to its end: it was {command}", seen=f"the solution: {solution}",
                   hint=HINT_WAIT + ", and do not kill COMMAND")
    if solution.status != command.status:
        raise Fail(f"COMMAND exited with status {command.code}, the solution with another",
                   expected=f"exit status {command.code}", seen=str(solution), hint=hint)


def kill(pid: int, sig: int, exits: ExitWatch, timeout: float = 2) -> None:
    """Send SIG to COMMAND's process PID; Fail unless that signal is what ends it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    ended = exits.end_of(pid, timeout)
    if ended is None:
        raise Fail(f"COMMAND did not end when the grader sent it {signal_name(sig)} (signal {sig})",
                   hint="COMMAND must start with every signal at its default action and none blocked: "
                        "an ignored signal and the signal mask survive fork(2) and execve(2), so "
                        "reset them in the child before it execs COMMAND")
    if ended.signal != sig:
        raise Fail(f"COMMAND ended ({ended}) before the grader's {signal_name(sig)} reached it",
                   hint="let COMMAND run until it ends by itself; do not kill it")


def expect_death_status(sig: int, solution: Exit, hint: str) -> None:
    """Fail unless SOLUTION reports a COMMAND killed by SIG: 128+SIG, or death by SIG itself."""
    if solution.status != 128 + sig:
        raise Fail(f"COMMAND was killed by {signal_name(sig)} (signal {sig})",
                   expected=f"exit status {128 + sig} (128+{sig}), as a shell reports it, or the "
                            "solution killed by the same signal",
                   seen=str(solution), hint=hint)
