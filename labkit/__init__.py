"""labkit: Linux namespaces, one readable module per concept.

    nstypes     the eight types, their CLONE_NEW* flags, decoding masks
    errors      OSError subclasses that say what went wrong and what to do
    syscalls    unshare, setns, mount, pivot_root, sethostname via ctypes
    namespace   /proc/PID/ns handles and ioctl_ns(2)
    persist     keep a namespace alive with a bind mount
    spawn       run a function or command in new namespaces (clone/unshare)
    join        run one in an existing process's namespaces (setns/nsenter)
    user        uid/gid maps and the setgroups rule
    listing     every namespace on the system, as lsns shows it
    check       what this kernel supports

Nothing is imported here: ``import labkit.spawn`` loads only what it needs.
"""

__version__ = "0.1.0"
