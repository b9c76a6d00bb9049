#!/usr/bin/env bash
# Vendored verbatim (apart from these two lines) from the shared tools/redmine-ci.sh, sha256 3e245ab5d1c2911f...,
# so that a fresh clone is self-contained. Change the shared copy first, then copy it here again.
# redmine-ci.sh: install and start a real Redmine on 127.0.0.1 for integration tests.
# It uses Debian bookworm's redmine 5.0.4 with SQLite, served by WEBrick via rackup. Run it as root.
#
#   bash redmine-ci.sh start   install if needed (idempotent), seed, start, wait, print
#                              REDMINE_URL=... REDMINE_API_KEY=...
#                              REDMINE_PROJECT=ci REDMINE_SESSION_CF_ID=<id>
#                              REDMINE_CUSTOMER_API_KEY=<key of a user who cannot see private notes>
#                              REDMINE_PID=<pid>
#   bash redmine-ci.sh stop    stop the server that "start" began (by its PID)
#   bash redmine-ci.sh env     print the variables again (server must be running)
#   bash redmine-ci.sh selftest  create issue, private note (204), read back, find by custom field,
#                              customer cannot see it, bad key gets 401
#
# Environment (optional): REDMINE_PORT (default 3000), REDMINE_CI_STATE (pid/log/key dir, default
# /tmp/redmine-ci), REDMINE_START_TIMEOUT (seconds, default 180).
# In CI:  out=$(bash redmine-ci.sh start) || exit 1
#          eval "$(printf '%s\n' "$out" | sed -n 's/^REDMINE_/export REDMINE_/p')"
#          ... cargo test ...; bash redmine-ci.sh stop
set -euo pipefail

PORT="${REDMINE_PORT:-3000}"
STATE="${REDMINE_CI_STATE:-/tmp/redmine-ci}"
TIMEOUT="${REDMINE_START_TIMEOUT:-180}"
APP=/usr/share/redmine
PIDFILE="$STATE/redmine.pid"
LOG="$STATE/redmine.log"
URL="http://127.0.0.1:$PORT"

log() { printf '[redmine-ci] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

# --- The bundler fix (see redmine-ci.md) -------------------------------------------------------
# libruby3.1 3.1.7-1~deb12u* ships bundler 2.3.27 as a default gem. That bundler has no Debian patch,
# and it outranks Debian's patched ruby-bundler 2.3.15. Version 2.3.27 treats every Debian-packaged gem
# (gemspec under /usr/share/rubygems-integration, no gems/<name>-<ver> directory) as deleted, so
# "bundle install --local" in redmine's postinst fails with
# "Bundler::GemNotFound: Could not find racc-1.6.2.gem for installation". RubyGems' own env var
# GEM_REQUIREMENT_BUNDLER pins bundler to Debian's version for every ruby started below (postinst,
# su/setpriv children, rails runner, rackup).
pin_bundler() {
  local v
  v=$(dpkg-query -W -f='${Version}' ruby-bundler 2>/dev/null || true)
  [ -n "$v" ] || v=$(apt-cache show --no-all-versions ruby-bundler 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
  v=${v#*:}; v=${v%%-*}; v=${v%%+*}
  [ -n "$v" ] || die "cannot find the version of Debian's ruby-bundler (did apt-get update run?)"
  export GEM_REQUIREMENT_BUNDLER="= $v"
}

installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }

install_redmine() {
  if installed redmine && installed redmine-sqlite && installed curl; then
    pin_bundler
  else
    log "installing redmine redmine-sqlite (apt output in $LOG)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >>"$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; die "apt-get update failed"; }
    pin_bundler
    # Repair a half-configured redmine, e.g. one left by an earlier attempt without the pin.
    if dpkg-query -W -f='${db:Status-Abbrev}' redmine 2>/dev/null | grep -q '^i[^i]'; then
      dpkg --configure -a >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "dpkg --configure -a failed"; }
    fi
    # The debconf defaults give one instance "default", dbconfig-common on, and sqlite3 (the only DB
    # package present). The postinst creates the DB and runs db:migrate and
    # redmine:load_default_data, which makes the user admin/admin.
    apt-get install -y -qq --no-install-recommends redmine redmine-sqlite curl >>"$LOG" 2>&1 ||
      { tail -n 40 "$LOG" >&2; die "apt-get install failed"; }
    installed redmine || die "redmine did not configure"
    log "installed after ${SECONDS}s"
  fi
  # The postinst (also on triggers, whenever a ruby package is installed) deletes the lock and remakes
  # it. An unpinned run leaves no lock behind, so remake it if it is missing.
  if [ ! -s /var/lib/redmine/Gemfile.lock ]; then
    (cd "$APP" && bundle install --local --quiet) >>"$LOG" 2>&1 || die "bundle install --local failed; see $LOG"
    chown www-data:www-data /var/lib/redmine/Gemfile.lock
  fi
  # The Debian package's database.yml gives SQLite no busy timeout, so two requests writing
  # at once make Redmine answer 500 (SQLite3::BusyException: database is locked): seen in CI
  # when notes were PUT to two issues concurrently. Rails' own template sets 5000 ms.
  local yml=/etc/redmine/default/database.yml
  if [ -f "$yml" ] && grep -q '^  adapter: sqlite3' "$yml" && ! grep -q '^  timeout:' "$yml"; then
    sed -i '/^  adapter: sqlite3/a\  timeout: 10000' "$yml"
  fi
}

# Run a command as www-data with the right environment (no sudo needed).
as_www() {
  mkdir -p "$STATE/home"; chown www-data:www-data "$STATE/home"
  setpriv --reuid=www-data --regid=www-data --init-groups \
    env HOME="$STATE/home" REDMINE_INSTANCE=default RAILS_ENV=production \
        GEM_REQUIREMENT_BUNDLER="$GEM_REQUIREMENT_BUNDLER" "$@"
}

# Idempotent seed: REST API on, login required (so a bad key gets 401, not anonymous access),
# project "ci" with all trackers, custom field "Session ID" (string, filterable, all projects), two
# issues, the admin's API key, and a user "customer" whose role cannot see private notes.
seed() {
  local out
  out=$(cd "$APP" && as_www ruby bin/rails runner '
    Setting.rest_api_enabled = "1"
    Setting.login_required = "1"
    trackers = Tracker.sorted.to_a
    raise "no trackers: default data not loaded" if trackers.empty?
    cf = IssueCustomField.find_by(name: "Session ID") ||
         IssueCustomField.create!(name: "Session ID", field_format: "string", is_for_all: true,
                                  is_filter: true, searchable: true, trackers: trackers)
    project = Project.find_by(identifier: "ci") ||
              Project.create!(name: "CI", identifier: "ci", is_public: true, trackers: trackers,
                              enabled_module_names: %w[issue_tracking])
    admin = User.find_by_login("admin")
    # The default admin must change its password, which blocks only Basic auth (403); clear it.
    admin.update_column(:must_change_passwd, false) if admin.must_change_passwd?
    User.current = admin
    if project.issues.empty?
      [["CI seed issue 1", "seed-session-1"], ["CI seed issue 2", "seed-session-2"]].each do |subject, sid|
        issue = Issue.new(project: project, tracker: trackers.first, author: admin, subject: subject)
        issue.custom_field_values = { cf.id.to_s => sid }
        issue.save!
      end
    end
    customer = User.find_by_login("customer") || begin
      u = User.new(firstname: "CI", lastname: "Customer", mail: "customer@example.com")
      u.login = "customer"
      u.password = u.password_confirmation = SecureRandom.hex(12)
      u.save!
      u
    end
    role = Role.givable.detect { |r| r.has_permission?(:add_issue_notes) && !r.has_permission?(:view_private_notes) }
    unless Member.where(project_id: project.id, user_id: customer.id).exists?
      Member.create!(project: project, principal: customer, role_ids: [role.id])
    end
    puts "KEY=#{admin.api_key}"
    puts "CF=#{cf.id}"
    puts "CUSTOMER_KEY=#{customer.api_key}"
  ' 2>>"$LOG")
  KEY=$(printf '%s\n' "$out" | sed -n 's/^KEY=//p')
  CF=$(printf '%s\n' "$out" | sed -n 's/^CF=//p')
  CKEY=$(printf '%s\n' "$out" | sed -n 's/^CUSTOMER_KEY=//p')
  [ -n "$KEY" ] && [ -n "$CF" ] && [ -n "$CKEY" ] || die "seeding failed; see $LOG"
  printf '%s\n' "$KEY" >"$STATE/api_key"; printf '%s\n' "$CF" >"$STATE/session_cf_id"
  printf '%s\n' "$CKEY" >"$STATE/customer_api_key"
  chmod 600 "$STATE/api_key" "$STATE/customer_api_key"
}

running_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  # Alive, and still our rackup (not a reused PID).
  kill -0 "$pid" 2>/dev/null && grep -qa rackup "/proc/$pid/cmdline" 2>/dev/null && printf '%s\n' "$pid"
}

print_env() {
  echo "REDMINE_URL=$URL REDMINE_API_KEY=$(cat "$STATE/api_key")"
  echo "REDMINE_PROJECT=ci REDMINE_SESSION_CF_ID=$(cat "$STATE/session_cf_id") REDMINE_CUSTOMER_API_KEY=$(cat "$STATE/customer_api_key") REDMINE_PID=$(cat "$PIDFILE")"
}

start() {
  mkdir -p "$STATE"; touch "$LOG"; chown www-data:www-data "$LOG"
  install_redmine
  if pid=$(running_pid); then log "already running (pid $pid)"; print_env; return 0; fi
  seed
  log "seeded after ${SECONDS}s; starting WEBrick on $URL"
  # setpriv and nohup exec, so $! is the ruby PID itself. "-rwebrick": webrick is a separate gem in
  # Ruby 3 and is not in Redmine's Gemfile, so rackup alone fails after bundler/setup with
  # "cannot load such file -- webrick". Loading it before Bundler.setup avoids that.
  cd "$APP"
  nohup setpriv --reuid=www-data --regid=www-data --init-groups \
    env HOME="$STATE/home" REDMINE_INSTANCE=default RAILS_ENV=production \
        GEM_REQUIREMENT_BUNDLER="$GEM_REQUIREMENT_BUNDLER" \
    ruby -rwebrick /usr/bin/rackup -E production -s webrick -o 127.0.0.1 -p "$PORT" config.ru \
    >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  cd - >/dev/null
  local pid t0=$SECONDS; pid=$(cat "$PIDFILE")
  until curl -fsS -o /dev/null -H "X-Redmine-API-Key: $(cat "$STATE/api_key")" "$URL/projects/ci.json" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$LOG" >&2; die "server exited"; }
    [ $((SECONDS - t0)) -lt "$TIMEOUT" ] || { tail -n 40 "$LOG" >&2; kill "$pid" 2>/dev/null || true; die "no answer after ${TIMEOUT}s"; }
    sleep 0.5
  done
  log "answering after $((SECONDS - t0))s (pid $pid); total ${SECONDS}s"
  print_env
}

stop() {
  local pid
  if pid=$(running_pid); then
    kill -TERM "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    log "stopped pid $pid"
  else
    log "not running"
  fi
  rm -f "$PIDFILE"
}

# Quick end-to-end check of what the tests rely on (prints the HTTP codes; exits non-zero on a mismatch).
selftest() {
  running_pid >/dev/null || die "not running"
  local key ckey cf sid body code id
  key=$(cat "$STATE/api_key"); ckey=$(cat "$STATE/customer_api_key"); cf=$(cat "$STATE/session_cf_id")
  sid="selftest-$(date +%s)-$$"
  body=$(curl -sS -w '\n%{http_code}' -H "X-Redmine-API-Key: $key" -H 'Content-Type: application/json' \
    -X POST "$URL/issues.json" \
    -d "{\"issue\":{\"project_id\":\"ci\",\"subject\":\"selftest $sid\",\"custom_fields\":[{\"id\":$cf,\"value\":\"$sid\"}]}}")
  code=${body##*$'\n'}; id=$(printf '%s' "$body" | sed -n 's/^{"issue":{"id":\([0-9]*\).*/\1/p')
  echo "POST /issues.json -> $code (id $id)"; [ "$code" = 201 ] && [ -n "$id" ] || die "create failed"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Redmine-API-Key: $key" -H 'Content-Type: application/json' \
    -X PUT "$URL/issues/$id.json" -d '{"issue":{"notes":"selftest private note","private_notes":true}}')
  echo "PUT /issues/$id.json private note -> $code"; [ "$code" = 204 ] || die "private note failed"
  body=$(curl -sS -H "X-Redmine-API-Key: $key" "$URL/issues/$id.json?include=journals")
  grep -q '"notes":"selftest private note","created_on":"[^"]*","private_notes":true' <<<"$body" ||
    die "note not read back as private"
  echo "GET /issues/$id.json?include=journals -> private note present, private_notes:true"
  body=$(curl -sS -H "X-Redmine-API-Key: $key" "$URL/issues.json?project_id=ci&status_id=*&cf_$cf=$sid")
  grep -q '"total_count":1,' <<<"$body" || die "lookup by custom field failed"
  echo "GET /issues.json?cf_$cf=$sid -> total_count 1"
  body=$(curl -sS -H "X-Redmine-API-Key: $ckey" "$URL/issues/$id.json?include=journals")
  grep -q '"journals":' <<<"$body" || die "customer cannot read the issue"
  if grep -q 'selftest private note' <<<"$body"; then die "customer can see the private note"; fi
  echo "customer key: private note hidden"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "X-Redmine-API-Key: wrong" "$URL/issues/$id.json")
  echo "wrong key -> $code"; [ "$code" = 401 ] || die "expected 401"
  echo "selftest ok (6 checks)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  env) running_pid >/dev/null || die "not running"; print_env ;;
  selftest) selftest ;;
  *) die "usage: $0 start|stop|env|selftest" ;;
esac
