"""Who sets a hostname, and in which UTS namespace: seccomp user notification.

The contract of exercise uts says the caller's hostname is *never*
changed.  Reading it now and then cannot see a change that is undone a
few microseconds later (set the caller's name, unshare(2), which copies
it, put the caller's name back).  The kernel can tell the grader about
every such call, though, as it happens: a seccomp filter (Linux 3.5) that
returns SECCOMP_RET_USER_NOTIF for a system call (Linux 5.0) stops the
calling thread and hands the call to a supervisor, through a listener
descriptor; the supervisor looks at the caller from outside and lets the
call go on unchanged (SECCOMP_USER_NOTIF_FLAG_CONTINUE, Linux 5.5).

A hostname changes two ways: sethostname(2), and a write to
/proc/sys/kernel/hostname (what ``sysctl kernel.hostname=`` does).  The
filter hands both to the grader (the second as any write(2), pwrite(2),
writev(2), sendfile(2), splice(2) or copy_file_range(2), whose target the
grader then reads in /proc/PID/fd), and refuses what would get round it:
io_uring and Linux AIO, which do their writes without system calls, and
the 32-bit and x32 entry points, which number the calls differently.

The filter is installed by a hook in the solution's process, right before
execve(2); everything the solution starts inherits it and nothing can
remove it.  The listener goes back to the grader over a Unix socket
(SCM_RIGHTS).  The grader's thread records, for each call, the process
and the UTS namespace it was in at that moment (/proc/PID/ns/uts), and
lets the call go on.

See seccomp(2), seccomp_unotify(2), bpf(2)'s classic filters in
Documentation/networking/filter.rst, proc(5).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import socket
import struct
import threading
from dataclasses import dataclass

from . import observe

# Classic BPF, as seccomp runs it on struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }.
LD_ABS, JEQ, AND, RET = 0x20, 0x15, 0x54, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ...
RET_ALLOW, RET_USER_NOTIF, RET_ERRNO = 0x7FFF0000, 0x7FC00000, 0x00050000
AUDIT_ARCH_X86_64, X32_BIT = 0xC000003E, 0x40000000

SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER = 317, 1, 1 << 3
SECCOMP_IOCTL_NOTIF_RECV, SECCOMP_IOCTL_NOTIF_SEND = 0xC0502100, 0xC0182101  # _IOWR('!', 0 and 1)
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1

SETHOSTNAME = 170
# The x86_64 calls that write to a descriptor, and which argument is that descriptor.
WRITES = {1: 0, 18: 0, 20: 0, 296: 0, 328: 0,  # write, pwrite64, writev, pwritev, pwritev2
          40: 0, 275: 2, 326: 2}  # sendfile (out_fd), splice (fd_out), copy_file_range (fd_out)
REFUSED = (425, 206)  # io_uring_setup, io_setup: writes that no seccomp filter sees

_NOTIF = struct.Struct("=QII iI Q 6Q")  # id, pid, flags, data: nr, arch, ip, args[6]
_RESPONSE = struct.Struct("=QqiI")  # id, val, error, flags


def _filter() -> bytes:
    """The BPF program: sethostname and the writes go to the grader; the ways round it fail."""
    notified, refused = [SETHOSTNAME, *WRITES], list(REFUSED)
    n, r = len(notified), len(refused)
    program = [
        (LD_ABS, 0, 0, 4),  # 0  A = arch
        (JEQ, 1, 0, AUDIT_ARCH_X86_64),  # 1  x86_64: on to 3
        (RET, 0, 0, RET_ERRNO | errno.ENOSYS),  # 2  a 32-bit call (int $0x80)
        (LD_ABS, 0, 0, 0),  # 3  A = nr
        (AND, 0, 0, X32_BIT),  # 4
        (JEQ, 1, 0, 0),  # 5  not x32: on to 7
        (RET, 0, 0, RET_ERRNO | errno.ENOSYS),  # 6  an x32 call
        (LD_ABS, 0, 0, 0),  # 7  A = nr
    ]
    # Then one test per call, jumping forward to the last three instructions:
    # 8+n+r allow, 8+n+r+1 refuse, 8+n+r+2 notify (offsets count from the next one).
    program += [(JEQ, n + r + 1 - k, 0, nr) for k, nr in enumerate(notified)]
    program += [(JEQ, r - j, 0, nr) for j, nr in enumerate(refused)]
    program += [(RET, 0, 0, RET_ALLOW), (RET, 0, 0, RET_ERRNO | errno.EPERM),
                (RET, 0, 0, RET_USER_NOTIF)]
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def install_filter() -> int:
    """Install the filter on this process; return the listener descriptor (in the sandbox)."""
    code = _filter()
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    fd = _libc.syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
                       ctypes.byref(prog))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
    return fd


@dataclass(frozen=True)
class HostnameChange:
    """A call that set a hostname: who, in which UTS namespace, and to what."""

    pid: int  # as the grader numbers it
    command: str
    namespace: str | None  # /proc/PID/ns/uts at the moment of the call
    call: str  # "sethostname" or "write to /proc/sys/kernel/hostname"
    name: str


class HostnameWatch:
    """Every hostname change by a solution and what it starts, as the kernel hands them over.

    ``hook`` goes to trial.run: it installs the filter and sends the
    listener back.  ``changes`` fills while the run goes on; ``close``
    ends the watch (after the run, so that no call waits for an answer).
    """

    def __init__(self) -> None:
        self.grader_end, self.sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.changes: list[HostnameChange] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="hostname-watch", daemon=True)
        self._thread.start()

    # In the sandbox, in the solution's process, right before execve(2).
    def hook(self, argv: list[str]) -> None:
        listener = install_filter()
        socket.send_fds(self.sandbox_end, [b"L"], [listener])
        os.close(listener)

    # In the grader.
    def _supervise(self) -> None:
        try:
            while not self._stop.is_set():
                if select.select([self.grader_end], [], [], 0.1)[0]:
                    break
            else:
                return
            _, fds, _, _ = socket.recv_fds(self.grader_end, 1, 1)
            if fds:
                with contextlib.closing(_Listener(fds[0])) as listener:
                    while not self._stop.is_set() and listener.serve(self._record):
                        pass
        except BaseException as e:  # noqa: BLE001 - the check reports it as the grader's trouble
            self.errors.append(e)

    def _record(self, pid: int, nr: int, args: tuple[int, ...]) -> None:
        if nr == SETHOSTNAME:
            call, name = "sethostname", _read_memory(pid, args[0], min(args[1], 64))
        else:
            if not observe.fd_target(pid, args[WRITES[nr]]).endswith("/sys/kernel/hostname"):
                return
            call = "write to /proc/sys/kernel/hostname"
            name = _read_memory(pid, args[1], min(args[2], 64)) if nr in (1, 18) else "?"
        self.changes.append(HostnameChange(pid, " ".join(observe.cmdline(pid)),
                                           observe.namespace(pid, "uts"), call, name.split("\n")[0]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.grader_end.close()
        self.sandbox_end.close()


class _Listener:
    """The grader's end of a seccomp filter: receive a call, look, let it go on."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def serve(self, look) -> bool:
        """Handle the calls waiting (or wait 0.1 s for one); False once nobody is filtered any more."""
        ready = select.poll()
        ready.register(self.fd, select.POLLIN)
        events = ready.poll(100)
        if any(mask & (select.POLLHUP | select.POLLERR) for _, mask in events):
            return False
        if not events:
            return True
        buffer = bytearray(_NOTIF.size)  # the kernel wants it zeroed
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_RECV, buffer, True)
        except OSError as e:  # ENOENT: the caller was killed before we took its call
            return e.errno in (errno.ENOENT, errno.EINTR)
        call_id, pid, _, nr, _, _, *args = _NOTIF.unpack(buffer)
        try:
            look(pid, nr, tuple(args))
        finally:
            with contextlib.suppress(OSError):  # ENOENT: it died meanwhile
                fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SEND,
                            _RESPONSE.pack(call_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE))
        return True

    def close(self) -> None:
        os.close(self.fd)


def _read_memory(pid: int, address: int, size: int) -> str:
    """SIZE bytes at ADDRESS in process PID's memory (the string a call was given)."""
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
            f.seek(address)
            return f.read(size).split(b"\0")[0].decode(errors="replace")
    except (OSError, ValueError, OverflowError):
        return "?"
