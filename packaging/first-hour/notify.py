#!/usr/bin/env python3
# systemd's side of Type=notify: print each datagram the service sends (READY=1, WATCHDOG=1, STATUS=…).
import os, socket, sys, time
path = sys.argv[1]
try: os.unlink(path)
except FileNotFoundError: pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path); os.chmod(path, 0o777)
t0 = time.monotonic()
while True:
    msg = s.recv(4096).decode(errors="replace").replace("\n", " ")
    print(f"{time.monotonic()-t0:8.3f}s {msg}", flush=True)
