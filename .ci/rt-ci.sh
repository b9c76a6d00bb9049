#!/usr/bin/env bash
# rt-ci.sh: install and start a real Request Tracker 5 on 127.0.0.1 for integration tests.
# It uses Debian bookworm's request-tracker5 5.0.3 with SQLite (dbconfig-common), served by the
# packaged rt-server (Starlet) as www-data. It talks REST 2.0 (built into RT 5) with an RT auth token.
# Run it as root.
#
#   bash rt-ci.sh start     install if needed (idempotent), initialise the DB if needed, set root's
#                           password, make an auth token, start, wait until REST 2.0 answers, print
#                             RT_URL=http://127.0.0.1:8480
#                             RT_REST_URL=http://127.0.0.1:8480/REST/2.0
#                             RT_TOKEN=1-14-<32 hex>       (header "Authorization: token $RT_TOKEN")
#                             RT_USER=root  RT_PASSWORD=...  (Basic auth also works)
#                             RT_QUEUE=General  RT_PID=<pid of the rt-server parent>
#                             RT_PERSON_USER=person  RT_PERSON_PASSWORD=...  (another agent, Basic auth:
#                             ticketsync's tests write as a person with it; added to the shared script)
#                           one VAR=value per line; also written to $RT_CI_ENV_FILE if that is set.
#   bash rt-ci.sh stop      stop the server that "start" began (by its PID; its workers exit with it)
#   bash rt-ci.sh status    exit 0 and print the variables if running and answering; 3 if not running
#   bash rt-ci.sh env       print the variables again (server must be running)
#   bash rt-ci.sh selftest  create ticket, comment (text/plain and JSON text/html), read history and
#                           comment content back, 404 for an unknown ticket, 401 for a bad token
#
# Environment (optional): RT_PORT (default 8480), RT_CI_STATE (pid/log/token dir, default /tmp/rt-ci),
# RT_CI_ENV_FILE (also write the variables there), RT_START_TIMEOUT (seconds, default 120),
# RT_WORKERS (Starlet workers, default 2), RT_ROOT_PASSWORD (default ci-root-pw, >= 5 chars),
# RT_PERSON_PASSWORD (default ci-person-pw), RT_BCRYPT_COST (default 4; RT's default 12 adds ~0.3 s per token/Basic-authenticated request).
# "start" deletes root's other auth tokens (each one is bcrypt-checked on every token request).
# In CI:  RT_CI_ENV_FILE=/tmp/rt.env bash rt-ci.sh start || exit 1
#         set -a; . /tmp/rt.env; set +a;  ... cargo test ...;  bash rt-ci.sh stop
set -euo pipefail

PORT="${RT_PORT:-8480}"
STATE="${RT_CI_STATE:-/tmp/rt-ci}"
TIMEOUT="${RT_START_TIMEOUT:-120}"
WORKERS="${RT_WORKERS:-2}"
ROOT_PW="${RT_ROOT_PASSWORD:-ci-root-pw}"
PERSON_PW="${RT_PERSON_PASSWORD:-ci-person-pw}"
COST="${RT_BCRYPT_COST:-4}"
ENV_FILE="${RT_CI_ENV_FILE:-}"
URL="http://127.0.0.1:$PORT"
API="$URL/REST/2.0"
PIDFILE="$STATE/rt.pid"
LOG="$STATE/rt.log"
TOKFILE="$STATE/token"
RTLIB=/usr/share/request-tracker5/lib
SERVER=/usr/share/request-tracker5/libexec/rt-server
ETC=/etc/request-tracker5
CI_CONF="$ETC/RT_SiteConfig.d/90-ci.pm"
PKGS=(request-tracker5 rt5-db-sqlite rt5-standalone curl)

log() { printf '[rt-ci] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
[ "${#ROOT_PW}" -ge 5 ] || die "RT_ROOT_PASSWORD must have at least 5 characters (RT's minimum)"
case "$ROOT_PW" in *[!A-Za-z0-9._-]*) die "RT_ROOT_PASSWORD: use only A-Z a-z 0-9 . _ -";; esac
[ "${#PERSON_PW}" -ge 5 ] || die "RT_PERSON_PASSWORD must have at least 5 characters (RT's minimum)"
case "$PERSON_PW" in *[!A-Za-z0-9._-]*) die "RT_PERSON_PASSWORD: use only A-Z a-z 0-9 . _ -";; esac
case "$COST" in [4-9]|[12][0-9]|3[01]) ;; *) die "RT_BCRYPT_COST must be 4..31";; esac

installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }

# --- install -------------------------------------------------------------------------------------
install_rt() {
  local p missing=0
  for p in "${PKGS[@]}"; do installed "$p" || missing=1; done
  [ "$missing" = 1 ] || return 0
  log "installing ${PKGS[*]} (apt output in $LOG)"
  export DEBIAN_FRONTEND=noninteractive
  # Preseed: without it the noninteractive defaults are rtname rt.<hostname>, WebBaseURL
  # http://<hostname>, WebPath /rt, root password "password". dbconfig-common then creates the SQLite
  # DB /var/lib/dbconfig-common/sqlite3/request-tracker5/rtdb and runs rt-setup-database-5 --action init.
  # (Preseeding webpath "" does not work: the config script replaces an empty answer with /rt. "/" is
  # kept as "/" and logged as an error by RT. 90-ci.pm below sets WebPath "" instead.)
  debconf-set-selections <<EOF
request-tracker5 request-tracker5/rtname string rt.example.test
request-tracker5 request-tracker5/organization string rt.example.test
request-tracker5 request-tracker5/correspondaddress string rt@rt.example.test
request-tracker5 request-tracker5/commentaddress string rt-comment@rt.example.test
request-tracker5 request-tracker5/webbaseurl string $URL
request-tracker5 request-tracker5/webpath string /rt
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/initial-root-password password $ROOT_PW
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
EOF
  apt-get update -qq >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "apt-get update failed"; }
  # Repair a half-installed/half-configured state left by an interrupted earlier attempt.
  if dpkg-query -W -f='${db:Status-Abbrev}\n' request-tracker5 2>/dev/null | grep -q '^i[^i]'; then
    dpkg --configure -a >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "dpkg --configure -a failed"; }
  fi
  apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >>"$LOG" 2>&1 ||
    { tail -n 40 "$LOG" >&2; die "apt-get install failed"; }
  installed request-tracker5 || die "request-tracker5 did not configure; see $LOG"
  log "installed after ${SECONDS}s"
}

# --- config (every start; idempotent) -------------------------------------------------------------
configure_rt() {
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# Written by rt-ci.sh: CI overrides, read after 50-debconf.pm and 51-dbconfig-common.pm.
Set(\$WebPath, "");                 # REST 2.0 at $URL/REST/2.0/
Set(\$WebBaseURL, "$URL");
Set(\$LogToSyslog, undef);          # no syslog daemon in CI; warnings go to rt-server's stderr
Set(\$LogToSTDERR, 'warning');
Set(\$MailCommand, 'testfile');     # RT's test mailer: outgoing mail goes to a temp file, not sendmail
Set(\$BcryptCost, $COST);             # default 12 costs ~0.3 s of CPU per authenticated request
1;
EOF
  if ! cmp -s "$tmp" "$CI_CONF"; then install -o root -g www-data -m 640 "$tmp" "$CI_CONF"; fi
  rm -f "$tmp"
  # Debian quirk: the postinst writes RT_SiteConfig.pm (now only comments) mode 600 root:root, so RT
  # running as www-data logs "Couldn't load RT config file RT_SiteConfig.pm: ... Permission denied".
  if [ -f "$ETC/RT_SiteConfig.pm" ]; then chgrp www-data "$ETC/RT_SiteConfig.pm"; chmod 640 "$ETC/RT_SiteConfig.pm"; fi
  # Without dbconfig-common's snippet (e.g. installed with dbconfig-no-thanks), use our own SQLite file.
  if [ ! -f "$ETC/RT_SiteConfig.d/51-dbconfig-common.pm" ]; then
    printf '%s\n' "Set(\$DatabaseType, 'SQLite');" \
      "Set(\$DatabaseName, '/var/lib/request-tracker5/rt-ci.sqlite');" '1;' >"$ETC/RT_SiteConfig.d/89-ci-db.pm"
    chown root:www-data "$ETC/RT_SiteConfig.d/89-ci-db.pm"; chmod 640 "$ETC/RT_SiteConfig.d/89-ci-db.pm"
  fi
  # Anything RT ran as root must not leave root-owned cache files that www-data cannot replace.
  chown -R www-data /var/cache/request-tracker5 /var/lib/request-tracker5 2>/dev/null || true
}

# Run a command as www-data (no sudo needed).
as_www() {
  setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$STATE/home" PATH="$PATH" "$@"
}

# --- database, password, token ----------------------------------------------------------------------
SEED_PL='
use strict; use warnings;
use RT;
RT::LoadConfig(); RT::InitPluginPaths(); RT::InitLogging();
require RT::Handle;
my ($ok, undef, $msg) = RT::Handle->CheckIntegrity;
unless ($ok) { print STDERR "database not initialised: $msg\n"; exit 3 }
RT::Init();
my $cost = RT->Config->Get("BcryptCost");
my $root = RT::User->new(RT->SystemUser);
$root->Load("root"); die "user root not found\n" unless $root->Id;
# Rehash the password at the configured (cheap) bcrypt cost, or set it if it differs.
my ($pcost) = ($root->__Value("Password") // "") =~ /^!bcrypt!(\d+)!/;
unless ($root->IsPassword($ENV{RT_CI_PW}) && ($pcost // -1) == $cost) {
    my ($ok, $m) = $root->SetPassword($ENV{RT_CI_PW}); die "SetPassword: $m\n" unless $ok;
}
my $queue = RT::Queue->new(RT->SystemUser); $queue->Load("General");
die "queue General not found\n" unless $queue->Id;
# Keep the previous token if it is valid and hashed at the configured cost. Delete every other token
# of root: REST 2.0 bcrypt-checks each token of the owner in turn on every request.
my ($keep, $token) = (0, "");
my ($uid, $clear) = RT::AuthToken->ParseAuthString($ENV{RT_CI_OLD_TOKEN} // "");
my $tokens = RT::AuthTokens->new(RT->SystemUser);
$tokens->LimitOwner(VALUE => $root->Id);
while (my $t = $tokens->Next) {
    my ($tcost) = $t->__Value("Token") =~ /^!bcrypt!(\d+)!/;
    if (!$keep && $uid && $uid == $root->Id && ($tcost // -1) == $cost && $t->IsToken($clear)) {
        ($keep, $token) = ($t->Id, $ENV{RT_CI_OLD_TOKEN});
    }
}
$tokens->GotoFirstItem;
while (my $t = $tokens->Next) {
    next if $t->Id == $keep;
    my ($ok, $m) = $t->Delete; warn "could not delete token ".$t->Id.": $m\n" unless $ok;
}
unless ($token) {
    my $t = RT::AuthToken->new(RT::CurrentUser->new($root));
    my ($id, $m, $auth) = $t->Create(Owner => $root->Id, Description => "rt-ci");
    die "AuthToken Create: $m\n" unless $id;
    $token = $auth;
}
# A second agent, "person", who comments and replies on General with Basic auth: a note by
# someone other than the API user (the forged-marker tests of ticketsync). RT grants no ticket
# rights by default, so they are granted here.
my $person = RT::User->new(RT->SystemUser);
$person->Load("person");
unless ($person->Id) {
    my ($ok, $m) = $person->Create(Name => "person", EmailAddress => "person\@rt.example.test",
        RealName => "Pat Person", Privileged => 1);
    die "person Create: $m\n" unless $ok;
}
unless ($person->IsPassword($ENV{RT_CI_PERSON_PW})) {
    my ($ok, $m) = $person->SetPassword($ENV{RT_CI_PERSON_PW}); die "person SetPassword: $m\n" unless $ok;
}
for my $right (qw(ShowTicket ShowTicketComments CommentOnTicket ReplyToTicket)) {
    next if $person->PrincipalObj->HasRight(Right => $right, Object => $queue);
    my ($ok, $m) = $person->PrincipalObj->GrantRight(Right => $right, Object => $queue);
    die "GrantRight $right: $m\n" unless $ok;
}
print "TOKEN=$token\n";
'

seed() {
  local out rc old="" pwfile
  [ -s "$TOKFILE" ] && old=$(cat "$TOKFILE")
  set +e
  out=$(cd "$STATE" && as_www env RT_CI_PW="$ROOT_PW" RT_CI_PERSON_PW="$PERSON_PW" RT_CI_OLD_TOKEN="$old" perl -I"$RTLIB" -e "$SEED_PL" 2>>"$LOG")
  rc=$?
  set -e
  if [ "$rc" = 3 ]; then
    # The package did not initialise the DB (or it was deleted): do what dbconfig-common does.
    log "initialising the database with rt-setup-database-5"
    pwfile="$STATE/home/rootpw"; printf '%s\n' "$ROOT_PW" >"$pwfile"; chown www-data "$pwfile"; chmod 600 "$pwfile"
    (cd "$STATE" && as_www /usr/sbin/rt-setup-database-5 --action init --skip-create \
        --root-password-file "$pwfile") >>"$LOG" 2>&1 ||
      (cd "$STATE" && as_www /usr/sbin/rt-setup-database-5 --action init \
        --root-password-file "$pwfile") >>"$LOG" 2>&1 ||
      { rm -f "$pwfile"; tail -n 30 "$LOG" >&2; die "rt-setup-database-5 failed; see $LOG"; }
    rm -f "$pwfile"
    out=$(cd "$STATE" && as_www env RT_CI_PW="$ROOT_PW" RT_CI_PERSON_PW="$PERSON_PW" RT_CI_OLD_TOKEN="" perl -I"$RTLIB" -e "$SEED_PL" 2>>"$LOG") ||
      { tail -n 20 "$LOG" >&2; die "seeding failed after DB init; see $LOG"; }
  elif [ "$rc" != 0 ]; then
    tail -n 20 "$LOG" >&2; die "seeding failed (rc $rc); see $LOG"
  fi
  TOKEN=$(printf '%s\n' "$out" | sed -n 's/^TOKEN=//p')
  [ -n "$TOKEN" ] || die "no token from seeding; see $LOG"
  (umask 077; printf '%s\n' "$TOKEN" >"$TOKFILE")
}

# --- process handling -------------------------------------------------------------------------------
running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  # Alive, and still our rt-server (not a reused PID).
  kill -0 "$pid" 2>/dev/null && grep -qa rt-server "/proc/$pid/cmdline" 2>/dev/null && printf '%s\n' "$pid"
}

children_of() {
  local d
  for d in /proc/[0-9]*; do
    [ "$(awk '{print $4}' "$d/stat" 2>/dev/null)" = "$1" ] && printf '%s\n' "${d#/proc/}"
  done
  return 0
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

api_ok() { curl -fsS -o /dev/null --max-time 10 -H "Authorization: token $1" "$API/queue/General" 2>/dev/null; }

print_env() {
  local out
  out="RT_URL=$URL
RT_REST_URL=$API
RT_TOKEN=$(cat "$TOKFILE")
RT_USER=root
RT_PASSWORD=$ROOT_PW
RT_QUEUE=General
RT_PERSON_USER=person
RT_PERSON_PASSWORD=$PERSON_PW
RT_PID=$(cat "$PIDFILE")"
  printf '%s\n' "$out" >"$STATE/env"; chmod 600 "$STATE/env"
  if [ -n "$ENV_FILE" ]; then (umask 077; printf '%s\n' "$out" >"$ENV_FILE"); fi
  printf '%s\n' "$out"
}

start() {
  local pid t0
  mkdir -p "$STATE/home"; chown www-data:www-data "$STATE/home"; touch "$LOG"; chown www-data "$LOG"
  if pid=$(running_pid); then
    if [ -s "$TOKFILE" ] && api_ok "$(cat "$TOKFILE")"; then
      log "already running (pid $pid)"; print_env; return 0
    fi
    # Running, but our token is refused (e.g. a start with another RT_CI_STATE replaced it): make a new one.
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$API/" 2>/dev/null)" = 401 ]; then
      seed
      if api_ok "$TOKEN"; then log "already running (pid $pid); made a new token"; print_env; return 0; fi
    fi
    die "pid $pid is running but $API does not answer; run '$0 stop' first"
  fi
  rm -f "$PIDFILE"
  install_rt
  configure_rt
  port_in_use && die "127.0.0.1:$PORT is already in use by another process"
  t0=$SECONDS
  seed
  log "database ready, token made in $((SECONDS - t0))s; starting rt-server on $URL"
  # setpriv, env and nohup all exec, so $! is the perl (Starlet parent) PID itself.
  local off; off=$(($(stat -c %s "$LOG") + 1))
  cd "$STATE"
  nohup setpriv --reuid=www-data --regid=www-data --init-groups env HOME="$STATE/home" PATH="$PATH" \
    perl "$SERVER" --host 127.0.0.1 --port "$PORT" --max-workers "$WORKERS" \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  cd - >/dev/null
  pid=$(cat "$PIDFILE"); t0=$SECONDS
  until api_ok "$TOKEN"; do
    kill -0 "$pid" 2>/dev/null || { tail -c +"$off" "$LOG" | tail -n 30 >&2; rm -f "$PIDFILE"; die "rt-server exited; see $LOG"; }
    if [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
      tail -c +"$off" "$LOG" | tail -n 30 >&2; stop >/dev/null 2>&1 || true; die "REST 2.0 did not answer within ${TIMEOUT}s"
    fi
    sleep 0.2
  done
  log "answering after $((SECONDS - t0))s (pid $pid); total ${SECONDS}s"
  print_env
}

stop() {
  local pid kids p alive i
  if pid=$(running_pid); then
    kids=$(children_of "$pid")
    kill -TERM "$pid"
    for i in $(seq 75); do
      alive=""; for p in $pid $kids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
      [ -n "$alive" ] || break
      sleep 0.2
    done
    for p in $alive; do kill -KILL "$p" 2>/dev/null || true; done
    log "stopped pid $pid (workers: $(echo $kids))"
  else
    log "not running"
  fi
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid=$(running_pid); then
    if [ -s "$TOKFILE" ] && api_ok "$(cat "$TOKFILE")"; then log "running (pid $pid), $API answers"; print_env; return 0; fi
    log "pid $pid is running but $API does not answer"; return 1
  fi
  log "not running"; return 3
}

# --- selftest -----------------------------------------------------------------------------------------
# JSON is read with perl's JSON module (an RT dependency), so no jq/python is needed.
json() { perl -MJSON -e 'local $/; my $d = decode_json(<STDIN>); print eval($ARGV[0]) // "", "\n"' "$1"; }

selftest() {
  running_pid >/dev/null || die "not running"
  local tok h body code id tx1 tx2 marker out
  tok=$(cat "$TOKFILE"); h="Authorization: token $tok"; marker="selftest-$(date +%s)-$$"
  req() { # method path [content-type body]  -> sets body and code
    local r
    if [ $# -gt 2 ]; then
      r=$(curl -sS -D "$STATE/hdr" -w '\n%{http_code}' -H "$h" -H "Content-Type: $3" -X "$1" "$API$2" --data-binary "$4")
    else
      r=$(curl -sS -D "$STATE/hdr" -w '\n%{http_code}' -H "$h" -X "$1" "$API$2")
    fi
    code=${r##*$'\n'}; body=${r%$'\n'*}
  }
  location_tx() { sed -n 's#^Location: .*/transaction/\([0-9]*\).*#\1#p' "$STATE/hdr" | tr -d '\r'; }

  req POST /ticket application/json "{\"Queue\":\"General\",\"Subject\":\"rt-ci $marker\"}"
  id=$(printf '%s' "$body" | json '$d->{id}')
  echo "POST /ticket -> $code (id $id)"; [ "$code" = 201 ] && [ -n "$id" ] || die "create failed: $body"

  req POST "/ticket/$id/comment" text/plain "plain $marker"
  tx1=$(location_tx)
  echo "POST /ticket/$id/comment text/plain -> $code (transaction $tx1) $(printf '%s' "$body" | json '$d->[0]')"
  [ "$code" = 201 ] && [ -n "$tx1" ] || die "text/plain comment failed: $body"

  req POST "/ticket/$id/comment" application/json "{\"Subject\":\"s\",\"Content\":\"<p>html <b>$marker</b></p>\",\"ContentType\":\"text/html\"}"
  tx2=$(location_tx)
  echo "POST /ticket/$id/comment JSON text/html -> $code (transaction $tx2)"
  [ "$code" = 201 ] && [ -n "$tx2" ] || die "JSON comment failed: $body"

  req GET "/ticket/$id/history?fields=Type&per_page=100"
  out=$(printf '%s' "$body" | json 'join ",", map { "$_->{id}:$_->{Type}" } @{$d->{items}}')
  echo "GET /ticket/$id/history?fields=Type -> $code [$out]"
  [ "$code" = 200 ] && [[ ",$out," == *",$tx1:Comment,"* ]] && [[ ",$out," == *",$tx2:Comment,"* ]] ||
    die "history does not list both comments"

  req GET "/ticket/$id/attachments?fields=TransactionId,ContentType,Content&per_page=100"
  out=$(printf '%s' "$body" | json 'join "|", map { "$_->{TransactionId} $_->{ContentType} $_->{Content}" } @{$d->{items}}')
  echo "GET /ticket/$id/attachments?fields=TransactionId,ContentType,Content -> $code [$out]"
  [[ "|$out|" == *"|$tx1 text/plain plain $marker|"* ]] || die "text/plain comment not read back"
  [[ "|$out|" == *"|$tx2 text/html <p>html <b>$marker</b></p>|"* ]] || die "text/html comment not read back"

  req GET "/transaction/$tx1/attachments?fields=Content"
  out=$(printf '%s' "$body" | json '$d->{items}[0]{Content}')
  echo "GET /transaction/$tx1/attachments?fields=Content -> $code \"$out\""
  [ "$code" = 200 ] && [ "$out" = "plain $marker" ] || die "transaction attachments read-back failed"

  req GET /ticket/999999999
  echo "GET /ticket/999999999 -> $code $body"; [ "$code" = 404 ] || die "expected 404"

  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: token 1-14-00000000000000000000000000000000" "$API/ticket/$id")
  echo "bad token -> $code"; [ "$code" = 401 ] || die "expected 401 for a bad token"

  code=$(curl -sS -o /dev/null -w '%{http_code}' -u "root:$ROOT_PW" "$API/ticket/$id")
  echo "Basic root:<password> -> $code"; [ "$code" = 200 ] || die "expected 200 for Basic auth"
  rm -f "$STATE/hdr"
  echo "selftest ok (9 checks)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) running_pid >/dev/null || die "not running"; print_env ;;
  selftest) selftest ;;
  *) die "usage: $0 start|stop|status|env|selftest" ;;
esac
