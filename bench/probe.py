#!/usr/bin/env python3
"""Start `ticketsync run` with a NOTIFY_SOCKET we listen on; print the time from exec to
READY=1, then (with --idle S) the RSS and CPU seconds the daemon used over S seconds.
Output: one line of key=value pairs. The daemon is stopped with SIGTERM at the end."""
import argparse, os, signal, socket, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--idle", type=float, default=0)
ap.add_argument("--log", required=True)
ap.add_argument("cmd", nargs="+")
a = ap.parse_args()

d = tempfile.mkdtemp(prefix="ts-notify-")
path = os.path.join(d, "notify.sock")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.settimeout(120)
env = dict(os.environ, NOTIFY_SOCKET=path)
tick = os.sysconf("SC_CLK_TCK")

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick  # utime + stime

def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # kB
    return 0

with open(a.log, "w") as log:
    t0 = time.monotonic()
    p = subprocess.Popen(a.cmd, env=env, stdout=log, stderr=log)
    ready = None
    try:
        while ready is None:
            msg = s.recv(4096).decode()
            if "READY=1" in msg.split("\n"):
                ready = time.monotonic() - t0
        out = {"ready_s": f"{ready:.3f}"}
        if a.idle > 0:
            c0, w0 = cpu(p.pid), time.monotonic()
            time.sleep(a.idle)
            out["idle_wall_s"] = f"{time.monotonic() - w0:.1f}"
            out["idle_cpu_s"] = f"{cpu(p.pid) - c0:.2f}"
            out["idle_rss_mb"] = f"{status(p.pid, 'VmRSS') / 1024:.1f}"
            out["peak_rss_mb"] = f"{status(p.pid, 'VmHWM') / 1024:.1f}"
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        os.unlink(path)
        os.rmdir(d)
print(" ".join(f"{k}={v}" for k, v in out.items()))
