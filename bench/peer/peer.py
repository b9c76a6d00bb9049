#!/usr/bin/env python3
"""The naive peer: what a helpdesk admin would write in an afternoon to do ticketsync's job
for one TeamViewer account and one Redmine, with Python's standard library only.

It walks TeamViewer's connection reports (GET /api/v1/reports/connections, offset_id paging),
stores each page in SQLite in one transaction (id, a few columns, the raw JSON), takes the
ticket id from the service case's custom_api ({"ticket_id": "..."}), and PUTs one private
note per matched session onto the Redmine issue (a new connection per note, as urllib does),
marking each delivered in its own transaction. No retries, no audit chain, no markers, no
matching rules beyond custom_api: the floor a hand-written script sets, which ticketsync must
beat by doing more (bench/e2e.sh reports the ratio).

usage: peer.py --tv-api URL --token TOKEN --redmine URL --redmine-key KEY --db FILE [--lookback-days N]
prints: records=N pages=N notes=N ingest_s=S deliver_s=S
"""
import argparse
import datetime as dt
import json
import sqlite3
import sys
import time
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--tv-api", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--redmine", required=True)
ap.add_argument("--redmine-key", required=True)
ap.add_argument("--db", required=True)
ap.add_argument("--lookback-days", type=int, default=3650)
a = ap.parse_args()

db = sqlite3.connect(a.db)
db.execute("PRAGMA journal_mode=WAL")
db.execute(
    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, userid TEXT, username TEXT, devicename TEXT,"
    " start_date TEXT, end_date TEXT, ticket TEXT, raw TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0)"
)
db.commit()

t0 = time.monotonic()
since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=a.lookback_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
offset = None
pages = records = 0
while True:
    q = {"from_date": since}
    if offset:
        q["offset_id"] = offset
    req = urllib.request.Request(
        f"{a.tv_api}/reports/connections?{urllib.parse.urlencode(q)}",
        headers={"Authorization": f"Bearer {a.token}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        page = json.load(r)
    pages += 1
    with db:  # one transaction per page
        for rec in page.get("records", []):
            records += 1
            ticket = None
            try:
                ticket = json.loads(rec.get("custom_api") or "null")
                ticket = ticket.get("ticket_id") if isinstance(ticket, dict) else None
            except ValueError:
                pass
            db.execute(
                "INSERT OR REPLACE INTO sessions (id, userid, username, devicename, start_date, end_date, ticket, raw)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rec["id"], rec.get("userid"), rec.get("username"), rec.get("devicename"),
                 rec.get("start_date"), rec.get("end_date"), ticket, json.dumps(rec)),
            )
    offset = page.get("next_offset")
    if not offset:
        break
t1 = time.monotonic()

notes = 0
todo = db.execute(
    "SELECT id, username, devicename, start_date, end_date, ticket FROM sessions"
    " WHERE ticket IS NOT NULL AND end_date IS NOT NULL AND delivered = 0 ORDER BY start_date"
).fetchall()
for sid, user, device, start, end, ticket in todo:
    text = (
        f"TeamViewer session {sid}\n\nTechnician: {user}\nDevice: {device}\n"
        f"Start: {start}\nEnd: {end}\n"
    )
    body = json.dumps({"issue": {"notes": text, "private_notes": True}}).encode()
    req = urllib.request.Request(
        f"{a.redmine}/issues/{urllib.parse.quote(str(ticket))}.json",
        data=body,
        method="PUT",
        headers={"Content-Type": "application/json", "X-Redmine-API-Key": a.redmine_key},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
    except urllib.error.HTTPError as e:
        print(f"ticket {ticket}: HTTP {e.code}", file=sys.stderr)
        continue
    with db:
        db.execute("UPDATE sessions SET delivered = 1 WHERE id = ?", (sid,))
    notes += 1
t2 = time.monotonic()
print(f"records={records} pages={pages} notes={notes} ingest_s={t1 - t0:.3f} deliver_s={t2 - t1:.3f}")
