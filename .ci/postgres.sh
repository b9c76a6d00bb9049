#!/usr/bin/env bash
# PostgreSQL for the tests that run the store on it (issue 17): bash .ci/postgres.sh start
#   start: make sure the local cluster answers on 127.0.0.1:5432 (starts it when it is down),
#          then print the URL the tests use (TICKETSYNC_PG_URL overrides it: an existing server
#          elsewhere, which is then only checked).
# The tests create a throwaway database per test (ts_test_<random>) and drop it after.
set -euo pipefail

url="${TICKETSYNC_PG_URL:-postgres://postgres@127.0.0.1/postgres}"

ready() { pg_isready -q -d "$url" 2>/dev/null; }

case "${1:-start}" in
  start)
    if ! ready; then
      if [ -n "${TICKETSYNC_PG_URL:-}" ]; then
        echo "ERROR: TICKETSYNC_PG_URL does not answer: $(pg_isready -d "$url" 2>&1 || true)" >&2
        exit 1
      fi
      version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
      if [ -z "$version" ]; then
        echo "ERROR: no PostgreSQL cluster in /etc/postgresql (apt-get install postgresql)" >&2
        exit 1
      fi
      echo "starting PostgreSQL $version" >&2
      pg_ctlcluster --skip-systemctl-redirect "$version" main start
      for _ in $(seq 1 30); do ready && break; sleep 1; done
      ready || { echo "ERROR: PostgreSQL $version did not come up" >&2; exit 1; }
    fi
    echo "$url"
    ;;
  *)
    echo "usage: $0 start" >&2
    exit 2
    ;;
esac
