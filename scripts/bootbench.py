#!/usr/bin/env python3
"""Time a guest's boot to its userspace marker, for scripts/bench.

usage: bootbench.py RUNS LABEL=COMMAND [LABEL=COMMAND ...]

Each COMMAND (a shell command line) boots the same Linux kernel and initramfs with
`hvtest.mode=marker`, whose /init prints `HV-LINUX-USERSPACE-OK`, then
`HV-LINUX-UPTIME <seconds>` and powers off. The labels' runs are interleaved
(A B A B ...) so slow phases of the machine hit all of them alike. Prints per label the
median wall time from start to the marker, the ratio to the first label, and, for a
run under the hypervisor, its exits per second of guest time by reason (from the
counters line the hypervisor prints when the guest stops).
"""
import re
import statistics
import subprocess
import sys
import time

MARKER = b"HV-LINUX-USERSPACE-OK"


def one_run(cmd, timeout=300):
    start = time.monotonic()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    marker_at = None
    out = []
    deadline = start + timeout
    for line in p.stdout:
        out.append(line)
        if marker_at is None and MARKER in line:
            marker_at = time.monotonic() - start
        if time.monotonic() > deadline:
            p.kill()
            break
    p.wait()
    return marker_at, b"".join(out).decode(errors="replace")


def exits_per_second(text):
    up = re.search(r"HV-LINUX-UPTIME ([0-9.]+)", text)
    ctr = re.search(r"counters: exits=(\d+) \(([^)]*)\)", text)
    if not up or not ctr:
        return None
    secs = float(up.group(1))
    reasons = dict(kv.split("=") for kv in ctr.group(2).split())
    return secs, int(ctr.group(1)), {k: int(v) / secs for k, v in reasons.items()}


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    runs = int(argv[1])
    labels, cmds = [], []
    for a in argv[2:]:
        label, _, cmd = a.partition("=")
        labels.append(label)
        cmds.append(cmd)
    times = {l: [] for l in labels}
    rates = {}
    for r in range(runs):
        for label, cmd in zip(labels, cmds):
            t, text = one_run(cmd)
            if t is None:
                print(f"bootbench: {label} run {r + 1}: no marker; last output:\n{text[-2000:]}", file=sys.stderr)
                return 1
            times[label].append(t)
            e = exits_per_second(text)
            if e:
                rates.setdefault(label, []).append(e)
    base = statistics.median(times[labels[0]])
    print(f"{'configuration':<28}{'median s':>10}{'runs (s)':>30}{'ratio':>8}")
    for label in labels:
        med = statistics.median(times[label])
        runs_s = " ".join(f"{t:.2f}" for t in times[label])
        print(f"{label:<28}{med:>10.2f}{runs_s:>30}{med / base:>8.2f}")
    for label, es in rates.items():
        secs, exits, by = es[-1]
        parts = " ".join(f"{k}={v:.0f}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        print(f"exits per second of guest time during boot ({label}, {secs:.2f} s to marker, {exits} exits): {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
