# Lesson 10: time namespaces.  Source of lessons/10-time.ipynb
# (build it with `sudo .venv/bin/python lessons/build.py 10-time`).
# rootless: yes
# exercise: timens

# %% [markdown]
# # 10 · Time namespaces: a clock of one's own
#
# **Goal.** A time namespace (Linux 5.6, time_namespaces(7)) holds two offsets
# that the kernel adds, for the processes in it, to the clocks that count from
# boot: `CLOCK_MONOTONIC` (with its variants `CLOCK_MONOTONIC_RAW` and
# `CLOCK_MONOTONIC_COARSE`) and `CLOCK_BOOTTIME` (with `CLOCK_BOOTTIME_ALARM`),
# and to the timers and sleeps measured against them. The wall clock is not
# touched. It exists for one job: moving
# a running program to another machine (checkpoint/restore) without its clocks
# jumping back. By the end of this lesson you can
#
# * name the clocks a time namespace shifts and the one it does not;
# * start a process whose `/proc/uptime` is a day ahead of yours;
# * explain `time` versus `time_for_children` in `/proc/PID/ns`;
# * say when offsets can be written, and which ones the kernel refuses;
# * explain why checkpoint/restore needs the namespace;
# * solve the bonus exercise `timens`.
#
# *Root or not:* this lesson runs as root and as a normal user, with the same
# output. Setting offsets needs `CAP_SYS_TIME` in the user namespace that owns
# the time namespace, so as a normal user labkit adds a user namespace (in
# which you have it); where the code below asks for a user namespace itself,
# it does so to behave the same in both cases.
#
# Clocks move while the notebook runs, so the cells print *differences*,
# rounded to a tenth of an hour, and verdicts. The functions of this lesson are
# in `labkit/timens.py`: read it beside time_namespaces(7) and clock_gettime(2).

# %%
import ctypes
import os
import subprocess
import time

import lab  # lessons/lab.py: pictures of namespaces
from labkit import syscalls, timens
from labkit.spawn import run, spawn

me = os.getpid()  # this notebook's kernel
HOUR, DAY = 3600, 86400
libc = ctypes.CDLL(None, use_errno=True)


class timespec(ctypes.Structure):  # struct timespec, <time.h>
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def hours(seconds):
    """A difference of clock readings, as a student reads it: '+24.0 h'."""
    return f"{round(seconds / HOUR, 1) + 0.0:+.1f} h"  # + 0.0 turns -0.0 into 0.0: no "-0.0 h"

# %% [markdown]
# ## 1. Three clocks
#
# clock_gettime(2) offers several clocks. Three matter here:
#
# | clock | counts | in a time namespace |
# | --- | --- | --- |
# | `CLOCK_REALTIME` | the wall-clock time, seconds since 1970; can be set, and jump | the same everywhere |
# | `CLOCK_MONOTONIC` | seconds since some point near boot, never jumps back, stops during suspend | plus the `monotonic` offset |
# | `CLOCK_BOOTTIME` | like MONOTONIC, but counts suspend too | plus the `boottime` offset |
#
# Each of the last two has variants that the offsets shift too:
# `CLOCK_MONOTONIC_RAW` (not slewed by NTP) and `CLOCK_MONOTONIC_COARSE`
# (cheaper, less precise) take the `monotonic` offset, `CLOCK_BOOTTIME_ALARM`
# (for timers that wake a suspended machine) the `boottime` one (section 2
# shows the first two; reading the alarm clock needs a real-time clock
# device, which not every virtual machine has).
#
# The first number in `/proc/uptime` is `CLOCK_BOOTTIME`:

# %%
now = timens.readings()  # /proc/uptime and clock_gettime(2) of the three clocks, one after the other
print("uptime is CLOCK_BOOTTIME:", abs(now["uptime"] - now["boottime"]) < 0.1)
print("CLOCK_REALTIME is far ahead (since 1970):", now["realtime"] > now["boottime"] + 50 * 365 * DAY)

# %% [markdown]
# ## 2. A process a day ahead
#
# `spawn(..., "time", time_offsets={...})` starts a child in a new time
# namespace with the given offsets. `shift(offsets)` compares the child's
# readings with ours, taken just before and just after:

# %%
def shift(offsets):
    """How far each clock of a new time namespace with OFFSETS is from ours."""
    before = timens.readings()
    inside = timens.readings_in_new_namespace(offsets)  # run(readings, namespaces="time", ...)
    after = timens.readings()
    return {clock: hours(inside[clock] - (before[clock] + after[clock]) / 2) for clock in inside}

shift({"monotonic": HOUR, "boottime": DAY})

# %% [markdown]
# The uptime and `CLOCK_BOOTTIME` are a day ahead, `CLOCK_MONOTONIC` an hour,
# and the wall clock has not moved: there is no `realtime` offset, since
# changing the time of day is what `settimeofday(2)` and NTP are for, for
# the whole machine.
#
# The same with commands: unshare(1) has `--monotonic` and `--boottime`
# (`--fork`, since the new namespace is for children, see section 3):

# %%
command = ["unshare", "--user", "--map-root-user", "--time", "--fork", "--boottime", str(DAY),
           "cat", "/proc/uptime"]
inside = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[0])
print("uptime inside minus ours:", hours(inside - timens.uptime()))

# %% [markdown]
# The variants of `CLOCK_MONOTONIC` move with it. And a timer or a sleep
# measured against a shifted clock is converted by the kernel: a process a
# day ahead that sleeps until "now + half a second" on its `CLOCK_MONOTONIC`
# (clock_nanosleep(2) with `TIMER_ABSTIME`) wakes half a second later, not a
# day early or late.

# %%
VARIANTS = {"CLOCK_MONOTONIC_RAW": time.CLOCK_MONOTONIC_RAW, "CLOCK_MONOTONIC_COARSE": 6}  # <linux/time.h>
TIMER_ABSTIME = 1  # clock_nanosleep(2): the time is a reading of the clock, not an interval


def variants():
    return {name: time.clock_gettime(clock) for name, clock in VARIANTS.items()}


def sleep_until_half_a_second_from_now():
    """clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, now + 0.5 s); how long it slept, in seconds."""
    wake = time.clock_gettime(time.CLOCK_MONOTONIC) + 0.5
    when = timespec(int(wake), int(wake % 1 * 1e9))
    start = time.perf_counter()
    libc.clock_nanosleep(time.CLOCK_MONOTONIC, TIMER_ABSTIME, ctypes.byref(when), None)
    return time.perf_counter() - start


before = variants()
inside = run(variants, namespaces="time", time_offsets={"monotonic": HOUR})
after = variants()
for name in VARIANTS:
    print(f"{name:23} inside minus ours: {hours(inside[name] - (before[name] + after[name]) / 2)}")
slept = run(sleep_until_half_a_second_from_now, namespaces="time", time_offsets={"monotonic": DAY})
print("a day ahead, slept until now + 0.5 s: woke after about half a second:", 0.4 < slept < 5)

# %% [markdown]
# And a picture: this kernel and a child in a new time namespace, with the
# offsets each namespace holds (`/proc/PID/timens_offsets`):

# %%
with spawn(["sleep", "infinity"], "time", time_offsets={"monotonic": HOUR, "boottime": DAY}) as child:
    picture = lab.picture({"this kernel": me, "child a day ahead": child.pid}, types=["time"],
                          note=lambda pid: f"boottime +{timens.read_offsets(pid)['boottime']:.0f} s")
picture

# %% [markdown]
# ## 3. `time` and `time_for_children`
#
# Like `unshare(CLONE_NEWPID)`, `unshare(CLONE_NEWTIME)` does not move the
# caller: a process's clocks never jump under its feet. The new namespace
# appears as the caller's `time_for_children`, and its next child is born in
# it. `timens.time_for_children_steps()` reads the two links before the
# unshare, after it, and in the next child (all in a child of ours; we run it
# in a user namespace, where it may unshare without root):

# %%
steps = run(timens.time_for_children_steps, namespaces="user", map_root=True)
before = steps["before unshare"]["time"]
for step, links in steps.items():
    print(f"{step:15} time is the old one: {links['time'] == before!s:5}  "
          f"time_for_children is the old one: {links['time_for_children'] == before}")

# %% [markdown]
# Since Linux 6.2 there is one more way in: execve(2) moves the caller into
# its `time_for_children` namespace, as a new program cannot notice a jump
# (the lab VM's Debian kernel, 6.1, does not do that yet). `unshare --time`
# without `--fork` execs its command in the process that called unshare(2);
# the cell checks that the kernel it runs on behaves as its release says:

# %%
command = ["unshare", "--user", "--map-root-user", "--time", "readlink", "/proc/self/ns/time"]
after_exec = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
moved = after_exec != os.readlink(f"/proc/{me}/ns/time")
linux_6_2_or_later = tuple(map(int, os.uname().release.split(".")[:2])) >= (6, 2)
print("moved into the new namespace at execve exactly if this is Linux 6.2 or later:",
      moved == linux_6_2_or_later)

# %% [markdown]
# ## 4. Offsets: once, and before anyone enters
#
# The offsets live in `/proc/PID/timens_offsets`, which shows the namespace of
# PID's `time_for_children`. Ours are zero; a child of a new namespace sees its own:

# %%
print("ours:           ", timens.read_offsets())
print("in the new one: ", run(timens.read_offsets, namespaces="time",
                              time_offsets={"monotonic": HOUR, "boottime": DAY}))

# %% [markdown]
# They can be written between `unshare(CLONE_NEWTIME)` and the moment the
# first process enters the namespace; then they are frozen (`EACCES`), so that
# no process in it ever sees its clocks jump:

# %%
def write_offsets_too_late():
    syscalls.unshare("time")
    run(os.getpid)  # a child enters the new namespace
    try:
        timens.write_offsets("self", {"monotonic": 5})
    except OSError as e:
        return f"{type(e).__name__}: {e}"

print(run(write_offsets_too_late, namespaces="user", map_root=True))

# %% [markdown]
# A clock may not go below zero (`ERANGE`), and only `monotonic` and `boottime`
# have offsets (`EINVAL`):

# %%
for offsets in ({"monotonic": -100 * 365 * DAY}, {"realtime": 5}):
    try:
        run(timens.readings, namespaces="time", time_offsets=offsets)
    except OSError as e:
        print(f"{type(e).__name__}: {e}")

# %% [markdown]
# ## 5. Why checkpoint/restore needs it
#
# CRIU (Checkpoint/Restore In Userspace) saves a running program to files
# and restores it later, possibly on another machine. Programs use
# `CLOCK_MONOTONIC` for timeouts and for "how long did that take", trusting that it
# never goes back. But each machine's monotonic clock starts near its own boot.
#
# Say the program was checkpointed on a machine that had been up for 30 days
# (we play that machine with a time namespace 30 days ahead), and is restored here:

# %%
checkpoint = run(time.clock_gettime, time.CLOCK_MONOTONIC, namespaces="time",
                 time_offsets={"monotonic": 30 * DAY})
restored_plainly = time.clock_gettime(time.CLOCK_MONOTONIC)  # restored without a time namespace
print("time since the checkpoint, as the program measures it:", hours(restored_plainly - checkpoint))

# %% [markdown]
# Its clock went 720 hours back: every timeout it had set is a month away. CRIU
# therefore restores the program in a new time namespace whose offset is
# *the saved reading minus the new machine's clock*:

# %%
offset = checkpoint - time.clock_gettime(time.CLOCK_MONOTONIC)
restored = run(time.clock_gettime, time.CLOCK_MONOTONIC, namespaces="time",
               time_offsets={"monotonic": offset})
print("time since the checkpoint, as the program measures it:", hours(restored - checkpoint))
print("the clock went back:", restored < checkpoint)

# %% [markdown]
# That is why the namespace shifts exactly the clocks that count from boot,
# and why the offsets can be set only before the restored process runs.

# %% [markdown]
# ## Check yourself
#
# 1. A process in a time namespace with `boottime 3600 0` runs `date`. Is the
#    time of day an hour ahead?
#    <details><summary>answer</summary>No: <code>date</code> reads
#    <code>CLOCK_REALTIME</code>, which no time namespace changes. Its
#    <code>/proc/uptime</code> is an hour ahead.</details>
# 2. A process calls `unshare(CLONE_NEWTIME)`. Do its own clocks change?
#    <details><summary>answer</summary>No: only its <code>time_for_children</code>
#    link changes; its children are born in the new namespace (and since Linux
#    6.2 it enters it itself at its next execve).</details>
# 3. Why can offsets not be changed once a process is in the namespace?
#    <details><summary>answer</summary>The process's <code>CLOCK_MONOTONIC</code>
#    would jump, which is exactly what the namespace exists to prevent.</details>
# 4. A program was checkpointed when its monotonic clock read 5,000,000 s and is
#    restored on a machine whose clock reads 1,000 s. What offset does CRIU write?
#    <details><summary>answer</summary>About 4,999,000 s (plus the time the
#    restore takes), so that the clock continues from 5,000,000 s.</details>
# 5. Can you give a process an uptime 10 s *smaller* than yours? And 10 years smaller?
#    <details><summary>answer</summary>10 s, if your uptime is above 10 s: the
#    offset is -10. Not 10 years: the clock would go below zero, and the kernel
#    refuses with <code>ERANGE</code>.</details>
#
# Try one: predict the output, then run it.

# %%
shift({"monotonic": 90 * 60})

# %% [markdown]
# ## Exercise `timens`: a clock of your own (bonus)
#
# Write `exercises/timens/solution`, an executable (Python, a shell script, C,
# ...) with this contract (EXERCISES.md, section 8):
#
# > `solution SECONDS COMMAND [ARG...]`
# >
# > Run COMMAND in a **new time namespace** whose `CLOCK_MONOTONIC` and
# > `CLOCK_BOOTTIME` are SECONDS (a non-negative integer) ahead of the caller's:
# > the first field of `/proc/uptime` read by COMMAND exceeds the caller's by
# > SECONDS, within one second. `CLOCK_REALTIME` is unchanged. The exit status of
# > `solution` is COMMAND's.
#
# Hints: the order is unshare(2) with `CLONE_NEWTIME`, write
# `/proc/self/timens_offsets` (a line for each clock, in one write or two, but
# before any process has entered the namespace), then fork(2): the child
# runs COMMAND, and the parent waits and exits with its status (section 3 says
# why a fork is needed). Try it by hand (`sudo exercises/timens/solution 86400
# cat /proc/uptime`), then let the grader check it:
#
# ```
# sudo grader check timens
# ```
