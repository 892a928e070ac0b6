#!/usr/bin/env python3
"""Time a guest's boot to its userspace marker, for scripts/bench.

usage: bootbench.py RUNS [--compare=LABEL_A|LABEL_B ...] LABEL=COMMAND [LABEL=COMMAND ...]

Each COMMAND (a shell command line) boots the same Linux kernel and initramfs with
`hvtest.mode=marker` (or `bench`), whose /init prints `HV-LINUX-USERSPACE-OK`, then
`HV-LINUX-UPTIME <seconds>` (bench mode: then runs the fork/mmap/touch workload and
prints `HV-LINUX-FORKSTRESS-MS <ms>`) and powers off. The labels' runs are interleaved
(A B A B ...) so slow phases of the machine hit all of them alike. Prints per label the
median wall time from start to the marker, the ratio to the first label, the median
workload time if there is one, and, for a run under the hypervisor, its exits per
second of guest time by reason (from the counters line the hypervisor prints when the
guest stops; guest time is the kernel's timestamp of its power-down line when there is
one) and, for a shadow-mode run, the shadow figures it prints. Each --compare adds a
line with LABEL_B's boot and workload medians as ratios to LABEL_A's.
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


def guest_seconds(text):
    down = re.search(r"\[\s*([0-9.]+)\] reboot: Power down", text)
    up = re.search(r"HV-LINUX-UPTIME ([0-9.]+)", text)
    return float(down.group(1)) if down else float(up.group(1)) if up else None


def exits_per_second(text):
    ctr = re.search(r"counters: exits=(\d+) \(([^)]*)\)", text)
    secs = guest_seconds(text)
    if not secs or not ctr:
        return None
    reasons = dict(kv.split("=") for kv in ctr.group(2).split())
    return secs, int(ctr.group(1)), {k: int(v) / secs for k, v in reasons.items()}


def workload_ms(text):
    m = re.search(r"HV-LINUX-FORKSTRESS-MS (\d+)", text)
    return int(m.group(1)) if m else None


def shadow_figures(text):
    m = re.search(r"shadow: (.*)", text)
    if not m:
        return None
    return {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def main(argv):
    if len(argv) < 3 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) > 1 and argv[1] in ("-h", "--help") else 2
    runs = int(argv[1])
    labels, cmds, compare = [], [], []
    for a in argv[2:]:
        if a.startswith("--compare="):
            compare.append(tuple(a[len("--compare="):].split("|", 1)))
            continue
        label, _, cmd = a.partition("=")
        labels.append(label)
        cmds.append(cmd)
    times = {l: [] for l in labels}
    work = {l: [] for l in labels}
    rates = {}
    shadow = {}
    for r in range(runs):
        for label, cmd in zip(labels, cmds):
            t, text = one_run(cmd)
            if t is None:
                print(f"bootbench: {label} run {r + 1}: no marker; last output:\n{text[-2000:]}", file=sys.stderr)
                return 1
            times[label].append(t)
            w = workload_ms(text)
            if w is not None:
                work[label].append(w)
            sf = shadow_figures(text)
            if sf:
                shadow[label] = (guest_seconds(text), sf)
            e = exits_per_second(text)
            if e:
                rates.setdefault(label, []).append(e)
    base = statistics.median(times[labels[0]])
    has_work = all(work[l] for l in labels)
    wbase = statistics.median(work[labels[0]]) if has_work else None
    head = f"{'configuration':<28}{'median s':>10}{'runs (s)':>30}{'ratio':>8}"
    if has_work:
        head += f"{'workload ms':>13}{'ratio':>8}"
    print(head)
    for label in labels:
        med = statistics.median(times[label])
        runs_s = " ".join(f"{t:.2f}" for t in times[label])
        line = f"{label:<28}{med:>10.2f}{runs_s:>30}{med / base:>8.2f}"
        if has_work:
            wm = statistics.median(work[label])
            line += f"{wm:>13.0f}{wm / wbase:>8.2f}"
        print(line)
    for a, b in compare:
        if a not in times or b not in times:
            print(f"bootbench: --compare names an unknown label: {a!r}, {b!r}", file=sys.stderr)
            return 2
        line = f"{b} / {a}: boot {statistics.median(times[b]) / statistics.median(times[a]):.2f}"
        if work[a] and work[b]:
            line += f", workload {statistics.median(work[b]) / statistics.median(work[a]):.2f}"
        print(line)
    for label, es in rates.items():
        secs, exits, by = es[-1]
        parts = " ".join(f"{k}={v:.0f}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
        print(f"exits per second of guest time ({label}, {secs:.2f} s of guest time, {exits} exits): {parts}")
    for label, (secs, f) in shadow.items():
        per_s = lambda k: f.get(k, 0) / secs if secs else 0.0
        print(f"shadow figures ({label}, last run, {secs:.2f} s of guest time):")
        print(f"  shadow syncs {per_s('syncs'):.0f}/s, write-protect faults {(f.get('wp_emulated', 0) + f.get('wp_decoded', 0) + f.get('wp_stepped', 0)) / secs:.0f}/s"
              f" ({per_s('wp_emulated'):.0f}/s with a syndrome, {per_s('wp_decoded'):.0f}/s without one, {per_s('wp_stepped'):.0f}/s single-stepped),"
              f" translation-register traps {per_s('reg_writes') + per_s('reg_reads'):.0f}/s, TLB maintenance traps {per_s('tlbi'):.0f}/s")
        print(f"  root cache: {f.get('cache_hits', 0)} hits, {f.get('cache_misses', 0)} misses, {f.get('evictions', 0)} evictions ({f.get('write_evictions', 0)} of dead roots whose table page was written), {f.get('l2_builds', 0)} L2 builds")
        g = f.get("guest_table_bytes_at_peak", 0)
        ratio = f"{f.get('peak_shadow_bytes', 0) / g:.2f}" if g else "-"
        print(f"  memory: peak shadow {f.get('peak_shadow_bytes', 0) // 1024} KiB for {g // 1024} KiB of guest tables (ratio {ratio});"
              f" at power-off {f.get('shadow_bytes', 0) // 1024} KiB for {f.get('guest_table_bytes', 0) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
