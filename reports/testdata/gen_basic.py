#!/usr/bin/env python3
"""Regenerates testdata/basic: a hand-made results dir following runner/results (schema v1).

Hostile content (HTML, <script>, ANSI escapes, control chars) lives in the console
artifact and probe errors; the 10 MB line is appended by tests at run time (not committed).
"""
import json, os

base = os.path.join(os.path.dirname(__file__), "basic")
T0 = "2026-11-29T01:00:00Z"

def t(m, s=0):
    return "2026-11-29T%02d:%02d:%02dZ" % (1 + m // 60, m % 60, s)

runs = []
minute = [0]

def run(cell, kernel, distro, docker, driver, repeat, verdict, reason="", findings=None, probes=None,
        checker=None, artifacts=None):
    m = minute[0]; minute[0] += 1
    r = {"cell": cell, "kernel": kernel, "distro": distro, "docker": docker, "driver": driver,
         "repeat": repeat, "attempt": 1, "verdict": verdict}
    if verdict not in ("unsupported",):
        r["kernel_release"] = {"6.1": "6.1.0-28-amd64", "5.10": "5.10.0-33-amd64", "6.12": "6.12.9-amd64"}.get(kernel, "")
        r["docker_server"] = docker
    if reason: r["reason"] = reason
    r["findings"] = findings or []
    if probes: r["probes"] = probes
    if checker: r["checker"] = checker
    r["phases"] = [] if verdict == "unsupported" else [
        {"name": "boot", "start": t(m, 0), "duration_ns": 2400000000},
        {"name": "docker-ready", "start": t(m, 3), "duration_ns": 13100000000},
        {"name": "probes", "start": t(m, 16), "duration_ns": 30000000000}]
    if artifacts: r["artifacts"] = artifacts
    r["started"] = t(m, 0)
    r["finished"] = t(m, 50) if verdict != "unsupported" else t(m, 0)
    runs.append(r)

def probes(io_mbps, lat_ms, net_mbps, start_ms, ok=True, errors=None):
    p = [{"name": "io", "ok": ok, "metrics": {"write_mb_per_s": io_mbps, "fsync_latency_p99_us": lat_ms * 1000, "write_latency_count": 1000}},
         {"name": "net", "ok": True, "metrics": {"stream_mb_per_s": net_mbps, "echo_latency_p99_us": 400}},
         {"name": "churn", "ok": True, "metrics": {"container_start_latency_p50_us": start_ms * 1000, "containers_cycled": 20}}]
    if errors: p[0]["errors"] = errors
    return p

def arts(cell, rep):
    d = "runs/%s/r%d" % (cell, rep)
    return {"console": d + "/console.log", "probes": d + "/probes.jsonl"}

def write_art(cell, rep, console, probes_txt="{}\n"):
    d = os.path.join(base, "runs", cell, "r%d" % rep)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "console.log"), "wb") as f: f.write(console)
    with open(os.path.join(d, "probes.jsonl"), "w") as f: f.write(probes_txt)

boot = b"".join(b"[    %d.%06d] boot line %d\n" % (i // 10, i * 1000, i) for i in range(1, 40))

# A: stable 3/3, good performance.
c = "k6.1-debian12-docker20.10.24-overlay2"
for rep in range(1, 4):
    run(c, "6.1", "debian12", "20.10.24", "overlay2", rep, "pass", probes=probes(410 + rep, 2.1, 940, 310),
        artifacts=arts(c, rep))
    write_art(c, rep, boot)

# B: stable 1/1 — must not outrank A or C.
c = "k6.1-debian12-docker20.10.24-btrfs"
run(c, "6.1", "debian12", "20.10.24", "btrfs", 1, "pass", probes=probes(900, 1.0, 990, 200))

# C: 19/20 with one probe failure (flaky), slower.
c = "k6.12-debian13-docker26.1.5-overlay2"
for rep in range(1, 21):
    if rep == 7:
        run(c, "6.12", "debian13", "26.1.5", "overlay2", rep, "probe-failure", reason="io probe: checksum mismatch at block 4096",
            findings=[{"source": "probe", "category": "io-verify", "severity": "error", "title": "io: checksum mismatch"}],
            probes=probes(300, 3.0, 800, 400, ok=False,
                          errors=["checksum mismatch <b>bold</b> \x1b[31mred\x1b[0m at block 4096"]))
    else:
        run(c, "6.12", "debian13", "26.1.5", "overlay2", rep, "pass", probes=probes(350, 2.5, 850, 380))

# D: kernel crash in 1 of 3 runs, hostile console.
c = "k5.10-debian11-docker20.10.5-overlay2"
hostile = (boot +
    b"[   42.000000] <script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">\n"
    b"[   42.100000] \x1b[1;31mBUG: unable to handle page fault for address: ffff888000000000\x1b[0m\n"
    b"[   42.100100] #PF: supervisor write access in kernel mode \x07\x08 bell+backspace\n"
    b"[   42.100200] Kernel panic - not syncing: Fatal exception\n"
    b"[   42.100300] ---[ end Kernel panic - not syncing: Fatal exception ]---\n" +
    b"".join(b"[   43.%06d] after panic %d\n" % (i, i) for i in range(10)))
for rep in range(1, 4):
    if rep == 2:
        run(c, "5.10", "debian11", "20.10.5", "overlay2", rep, "kernel-crash", reason="kernel panic on the serial console",
            findings=[{"source": "console", "category": "kernel-panic", "severity": "fatal",
                       "title": "BUG: unable to handle page fault in overlay_write",
                       "start_line": 41, "end_line": 43,
                       "excerpt": "BUG: unable to handle page fault\nKernel panic - not syncing: Fatal exception"}],
            artifacts=arts(c, rep))
        write_art(c, rep, hostile)
    else:
        run(c, "5.10", "debian11", "20.10.5", "overlay2", rep, "pass", probes=probes(380, 2.2, 900, 330))

# E: aufs is unsupported on every reachable kernel.
c = "k6.1-debian12-docker20.10.24-aufs"
run(c, "6.1", "debian12", "20.10.24", "aufs", 1, "unsupported",
    reason="kernel 6.1 has no aufs module (CONFIG_AUFS_FS unset in linux-image-6.1.0-28-amd64)")

# F: only infra errors: inconclusive, never counted.
c = "k6.12-debian13-docker26.1.5-btrfs"
for rep in (1, 2):
    run(c, "6.12", "debian13", "26.1.5", "btrfs", rep, "infra-error", reason="qemu exited: cannot allocate memory",
        findings=[{"source": "runner", "category": "infra", "severity": "error", "title": "qemu: cannot allocate memory"}])

# G: fs corruption found by the checker.
c = "k6.1-debian12-docker20.10.24-devicemapper"
run(c, "6.1", "debian12", "20.10.24", "devicemapper", 1, "fs-corruption", reason="e2fsck found errors on the scratch disk",
    findings=[{"source": "checker", "category": "ext4-error", "severity": "error",
               "title": "EXT4-fs error: ext4_lookup: deleted inode referenced"}],
    checker={"tool": "e2fsck", "args": ["-fn", "/dev/loop7"], "exit_code": 4, "clean": False,
             "output": "Pass 1: Checking inodes\nInode 12 has illegal blocks. <script>window.pwned=3</script>\n\x1b[33mFIX? no\x1b[0m\n"})
run(c, "6.1", "debian12", "20.10.24", "devicemapper", 2, "pass", probes=probes(120, 9.0, 900, 900))

# H: docker never came up: failing.
c = "k6.12-debian13-docker20.10.24-overlay2"
for rep in (1, 2):
    run(c, "6.12", "debian13", "20.10.24", "overlay2", rep, "docker-failure", reason="dockerd did not become ready within 120s",
        findings=[{"source": "runner", "category": "docker-start", "severity": "error", "title": "dockerd: failed to start daemon"}])

# I: 2 passes and 1 infra error (the infra error does not count).
c = "k6.1-debian12-docker26.1.5-overlay2"
run(c, "6.1", "debian12", "26.1.5", "overlay2", 1, "pass", probes=probes(400, 2.0, 950, 300))
run(c, "6.1", "debian12", "26.1.5", "overlay2", 2, "infra-error", reason="host ran out of disk space")
# ... and the second pass's kernel printed a WARNING (hostile title): a pass with kernel warnings.
run(c, "6.1", "debian12", "26.1.5", "overlay2", 3, "pass", probes=probes(405, 2.0, 955, 290),
    findings=[{"source": "console", "category": "warning", "severity": "warning",
               "title": "WARNING in overlay_copy_up <img src=x onerror=\"window.pwned=4\">", "start_line": 7, "end_line": 9}])

runs.sort(key=lambda r: (r["cell"], r["repeat"]))
doc = {"schema": "matrixctl.results/v1", "run_id": "20261129T010000Z-fixture", "spec": "matrix.yaml",
       "spec_sha256": "0" * 64, "host": "fixture-host", "provider": "qemu", "started": T0,
       "finished": t(minute[0] + 1), "runs": runs}
with open(os.path.join(base, "results.json"), "w") as f:
    json.dump(doc, f, indent=2, ensure_ascii=True)
    f.write("\n")
