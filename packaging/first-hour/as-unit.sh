#!/bin/bash
# packaging/first-hour.sh MODE=chroot: inside the chroot, as root, start ticketsync.service's
# ExecStart the way systemd 252 would for this unit, without systemd as PID 1: the dynamic
# user, the state directory, LoadCredential=, Environment=, UMask= and the paths the sandbox
# hides. Reads the installed unit and its drop-ins. (The other hardening is not emulated.)
set -euo pipefail
UNIT=/lib/systemd/system/ticketsync.service
DROPINS=(/etc/systemd/system/ticketsync.service.d/*.conf)
UID_DYN=${UID_DYN:-61873}
lines() { sed -n "s/^$1=//p" "$UNIT" "${DROPINS[@]}" 2>/dev/null; }
exec_start=$(lines ExecStart | tail -n1)
# StateDirectory=ticketsync with DynamicUser=yes: /var/lib/private/ticketsync (0700, the
# dynamic uid) and the symlink /var/lib/ticketsync -> private/ticketsync.
install -d -m 0700 /var/lib/private
install -d -m 0700 -o "$UID_DYN" -g "$UID_DYN" /var/lib/private/ticketsync
[ -L /var/lib/ticketsync ] || ln -s private/ticketsync /var/lib/ticketsync
# LoadCredential=NAME:PATH: copied to $CREDENTIALS_DIRECTORY, readable by the service only.
creds=/run/credentials/ticketsync.service
rm -rf "$creds"; install -d -m 0500 -o "$UID_DYN" -g "$UID_DYN" "$creds"
while IFS=: read -r name path; do
  install -m 0400 -o "$UID_DYN" -g "$UID_DYN" "$path" "$creds/$name"
done < <(lines LoadCredential)
# Environment= lines, %S = /var/lib.
envs=(); while read -r e; do envs+=("${e//%S//var/lib}"); done < <(lines Environment)
umask_v=$(lines UMask | tail -n1)
echo "as-unit: uid=$UID_DYN env=${envs[*]} CREDENTIALS_DIRECTORY=$creds umask=$umask_v"
echo "as-unit: $exec_start"
# What the unit's sandbox does to paths, in the private mount namespace the caller made
# (`unshare -m --propagation private chroot ROOT ...`): /var/lib/private reachable (systemd
# makes it so inside the service's namespace), /etc/ticketsync/credentials hidden
# (InaccessiblePaths=).
[ "${AS_UNIT_PRIVATE_NS:-}" = 1 ] || { echo "as-unit: run me under unshare -m --propagation private" >&2; exit 1; }
exec bash -c '
  set -e
  mkdir -p /run/as-unit-state && mount --bind /var/lib/private/ticketsync /run/as-unit-state
  mount -t tmpfs -o mode=0755 tmpfs /var/lib/private
  mkdir /var/lib/private/ticketsync && mount --bind /run/as-unit-state /var/lib/private/ticketsync
  mount -t tmpfs -o mode=0000 tmpfs /etc/ticketsync/credentials
  umask '"$umask_v"'
  exec setpriv --reuid='"$UID_DYN"' --regid='"$UID_DYN"' --clear-groups --no-new-privs -- \
    env -i PATH=/usr/bin:/bin LANG=C.UTF-8 '"${envs[*]}"' CREDENTIALS_DIRECTORY='"$creds"' \
      NOTIFY_SOCKET="$NOTIFY_SOCKET" WATCHDOG_USEC=60000000 '"$exec_start"'
'
