#!/usr/bin/env bash
# Build the Debian package and check it: bash .ci/deb.sh   (from the repository root)
#   1. cargo-deb is installed with `cargo install` when missing (a few minutes, once);
#   2. cargo build (release profile; DEB_PROFILE=dev packages the debug build instead, which
#      .ci/run uses: the tests already built it, and a release build from scratch would take
#      most of CI's time budget), then `cargo deb --no-build` (the man pages are committed in
#      man/, which cargo-deb compresses; tests/it/package.rs checks they are current);
#   3. dpkg-deb -I / -c: control fields and the files that must be in the package;
#   4. when root with dpkg (CI: Debian bookworm): dpkg -i, check that the files landed, the
#      unit is not enabled, the binary runs, an edited config survives a reinstall, the installed
#      unit passes systemd-analyze verify, then dpkg --purge.
#      Then the unit's ExecStart is started as systemd would (READY=1 on a notify socket,
#      /healthz, SIGTERM → exit 0) with a loopback-only config; systemd itself is not PID 1 in CI.
# Prints the path of the .deb on success.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

die() { printf 'deb: FAIL: %s\n' "$*" >&2; exit 1; }

if ! cargo deb --version >/dev/null 2>&1; then
  echo "deb: installing cargo-deb (once)"
  cargo install --locked cargo-deb --version 3.8.0
fi

PROFILE=${DEB_PROFILE:-release}
case $PROFILE in
  release) cargo build --release --locked; FAST= ;;
  dev) cargo build --locked; FAST=--fast ;;
  *) die "DEB_PROFILE must be release or dev" ;;
esac
rm -f target/debian/ticketsync_*.deb
cargo deb --no-build --locked --profile "$PROFILE" $FAST -o target/debian/ >/dev/null
DEB=$(ls -t target/debian/ticketsync_*.deb | head -n 1)
echo "deb: built $DEB ($(du -h "$DEB" | cut -f1))"

info=$(dpkg-deb -I "$DEB")
contents=$(dpkg-deb -c "$DEB")
echo "$info" | grep -E '^ (Package|Version|Architecture|Depends|Section):'
for field in 'Package: ticketsync' 'Architecture: amd64' 'Depends: .*libc6'; do
  grep -Eq "^ $field" <<<"$info" || die "control field missing: $field"
done
for f in ./usr/bin/ticketsync ./etc/ticketsync/ticketsync.toml ./usr/share/man/man1/ticketsync.1.gz ./usr/share/man/man1/ticketsync-run.1.gz \
         ./usr/share/doc/ticketsync/README.md ./usr/share/doc/ticketsync/schema.md \
         ./usr/share/doc/ticketsync/operations.md ./usr/share/doc/ticketsync/configuration.md ./usr/share/doc/ticketsync/auditors.md \
         ./usr/share/doc/ticketsync/vendors/teamviewer.md ./usr/share/doc/ticketsync/vendors/redmine.md ./usr/share/doc/ticketsync/security/audit.md \
         ./usr/share/doc/ticketsync/examples/ticketsync.example.toml; do
  grep -q " $f\$" <<<"$contents" || die "$f is not in the package"
done
grep -Eq ' \./(usr/)?lib/systemd/system/ticketsync\.service$' <<<"$contents" || die "the systemd unit is not in the package"
grep -E ' \./usr/bin/ticketsync$' <<<"$contents" | grep -q '^-rwxr-xr-x' || die "/usr/bin/ticketsync is not mode 0755"
dpkg-deb -e "$DEB" target/debian/control
grep -qx /etc/ticketsync/ticketsync.toml target/debian/control/conffiles || die "the config is not a conffile"
# cargo-deb's postinst re-enables the unit only if it was enabled before (an upgrade); the
# install below checks that a first install leaves it disabled.
echo "deb: contents and control OK"

if [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null 2>&1 && [ "${TICKETSYNC_DEB_INSTALL:-1}" = 1 ]; then
  if dpkg -s ticketsync >/dev/null 2>&1; then
    die "a ticketsync package is already installed here; not touching it (TICKETSYNC_DEB_INSTALL=0 skips this step)"
  fi
  trap 'dpkg --purge ticketsync >/dev/null 2>&1 || true' EXIT
  dpkg -i "$DEB"
  test -x /usr/bin/ticketsync || die "/usr/bin/ticketsync missing after install"
  unit=$( [ -f /lib/systemd/system/ticketsync.service ] && echo /lib/systemd/system/ticketsync.service || echo /usr/lib/systemd/system/ticketsync.service)
  test -f "$unit" || die "unit missing after install"
  test -f /etc/ticketsync/ticketsync.toml || die "config missing after install"
  [ "$(stat -c %a /etc/ticketsync/credentials)" = 700 ] || die "/etc/ticketsync/credentials is not mode 0700"
  [ ! -e /etc/systemd/system/multi-user.target.wants/ticketsync.service ] || die "the unit was enabled at install (it must wait for the operator)"
  /usr/bin/ticketsync --version
  # The shipped config enables nothing: it passes `check` as installed, with no secret.
  env -u CREDENTIALS_DIRECTORY /usr/bin/ticketsync check --config /etc/ticketsync/ticketsync.toml \
    || die "the installed config does not pass check"
  # Start the installed service command the way systemd would (systemd is not PID 1 here):
  # the unit's ExecStart with a loopback-only config (no vendor hosts), a notify socket that
  # must receive READY=1, /healthz over HTTP, then SIGTERM and a clean exit 0.
  smoke=$(mktemp -d)
  printf '[store]\npath = "%s/state/ticketsync.db"\n[http]\nenabled = true\nlisten = "127.0.0.1:19187"\n' "$smoke" >"$smoke/ticketsync.toml"
  exec_start=$(sed -n 's/^ExecStart=//p' "$unit" | head -n1)
  [ -n "$exec_start" ] || die "no ExecStart in the installed unit"
  read -r -a cmd <<<"${exec_start/\/etc\/ticketsync\/ticketsync.toml/$smoke/ticketsync.toml}"
  python3 - "$smoke/notify" >"$smoke/ready" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
while True:
    if "READY=1" in s.recv(4096).decode().split("\n"):
        print("READY=1")
        break
PY
  listener=$!
  for _ in $(seq 50); do [ -S "$smoke/notify" ] && break; sleep 0.1; done
  NOTIFY_SOCKET=$smoke/notify "${cmd[@]}" 2>"$smoke/log" &
  daemon=$!
  wait "$listener" || { cat "$smoke/log" >&2; die "the installed service never sent READY=1"; }
  grep -q READY=1 "$smoke/ready" || die "no READY=1"
  curl -fsS http://127.0.0.1:19187/healthz >/dev/null || { cat "$smoke/log" >&2; die "/healthz did not answer"; }
  kill -TERM "$daemon"
  wait "$daemon" || { cat "$smoke/log" >&2; die "the service did not exit 0 on SIGTERM"; }
  echo "deb: the installed service started (READY=1, /healthz OK) and stopped cleanly on SIGTERM"
  rm -rf "$smoke"
  # Upgrade path: an edited conffile survives a reinstall of the package.
  echo '# edited by .ci/deb.sh' >>/etc/ticketsync/ticketsync.toml
  dpkg -i --force-confold "$DEB" >/dev/null
  grep -q '^# edited by .ci/deb.sh' /etc/ticketsync/ticketsync.toml || die "the edited config was replaced on upgrade"
  if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify --man=no "$unit" || die "systemd-analyze verify failed on the installed unit"
  fi
  dpkg --purge ticketsync
  trap - EXIT
  test ! -e /usr/bin/ticketsync || die "/usr/bin/ticketsync left after purge"
  echo "deb: installed, checked and purged"
else
  echo "deb: not root or no dpkg: install step skipped"
fi
echo "$DEB"
