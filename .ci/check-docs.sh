#!/usr/bin/env bash
# Documentation checks: bash .ci/check-docs.sh   (from the repository root; needs python3)
#   1. README.md stays under 300 lines (issue 18: a README an operator reads);
#   2. every key of config/ticketsync.example.toml (the source of truth for keys) is named in
#      docs/configuration.md, so a new key cannot ship undocumented there;
#   3. every relative link in README.md, BENCHMARKS.md and docs/ points at a file that exists
#      and, with #anchor, at a heading of that file (GitHub's anchor rules).
# Prints what is wrong and exits 1; no build needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 - <<'PY'
import glob, os, re, sys

errors = []

lines = sum(1 for _ in open("README.md", encoding="utf-8"))
if lines >= 300:
    errors.append(f"README.md has {lines} lines (keep it under 300; move details to docs/)")

# Keys: table headers set the section; `key =` and `#key =` lines are keys (prose comments
# start with "# ", so they never match).
doc = open("docs/configuration.md", encoding="utf-8").read()
section = None
for line in open("config/ticketsync.example.toml", encoding="utf-8"):
    m = re.match(r"^#?\[\[?([a-z_.]+)\]\]?\s*$", line)
    if m:
        section = m.group(1)
        continue
    m = re.match(r"^#?([a-z_]+)\s*=", line)
    if m and section and f"`{m.group(1)}`" not in doc and f"`{m.group(1)} /" not in doc:
        errors.append(f"docs/configuration.md does not name [{section}] {m.group(1)}")

def slug(heading):
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.replace("`", ""))
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

def anchors(path):
    found, fenced = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#+\s+(.*)", line)):
            found.add(slug(m.group(1)))
    return found

for md in ["README.md", "BENCHMARKS.md"] + sorted(glob.glob("docs/**/*.md", recursive=True)):
    text = re.sub(r"```.*?```", "", open(md, encoding="utf-8").read(), flags=re.S)
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
        if not os.path.exists(target):
            errors.append(f"{md}: link to a missing file: {link}")
        elif anchor and target.endswith(".md") and anchor not in anchors(target):
            errors.append(f"{md}: link to a missing heading: {link}")

for e in errors:
    print(f"docs: FAIL: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"docs: OK (README {lines} lines, every example key in docs/configuration.md, links resolve)")
PY
