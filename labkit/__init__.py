"""labkit: Linux namespaces, one readable module per concept.

The machinery, in the order one learns it:

    nstypes     the eight types, their CLONE_NEW* flags, decoding masks
    procfs      the /proc files, read and written one way
    errors      OSError subclasses that say what went wrong and what to do
    syscalls    unshare, setns, mount, pivot_root, sethostname via ctypes
    namespace   /proc/PID/ns handles and ioctl_ns(2)
    child       fork, the status pipe, PID 1's extra fork: what spawn and join share
    spawn       run a function or command in new namespaces (clone/unshare)
    join        run one in an existing process's namespaces (setns/nsenter)
    persist     keep a namespace alive with a bind mount or an open fd
    listing     every namespace on the system, as lsns shows it
    check       what this kernel supports

One module per namespace type, each beside its man page:

    uts         hostname and NIS domain name        uts_namespaces(7)
    mount       mountinfo, propagation, bind mounts mount_namespaces(7)
    jail        chroot, its escape, pivot_root      chroot(2), pivot_root(2)
    pid         PID 1, NSpid, reaping, an init      pid_namespaces(7)
    net         netns, veth, addresses, SCM_RIGHTS  network_namespaces(7)
    user        uid/gid maps, setgroups, capabilities user_namespaces(7)
    ipc         System V IPC and POSIX queues       ipc_namespaces(7)
    cgroup      cgroups, limits, cgroup namespaces  cgroup_namespaces(7)
    timens      monotonic and boottime offsets      time_namespaces(7)
    container   all of it together, in one page

And for the terminal: cli (the labkit command), output, demo (live demos).

Nothing is imported here: ``import labkit.spawn`` loads only what it needs.
"""

__version__ = "0.1.0"
