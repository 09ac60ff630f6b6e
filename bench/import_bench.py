"""`runbook import` of a 2,000-line checklist, as a whole process (interpreter start-up included).

    python bench/import_bench.py [--lines 2000] [--repeat 5]

The checklist is the seed's shape repeated: numbered step headings with an
estimate, a shell block (cd, venv, a dry-run/commit pair), expected output, a
verification SQL block with expectations, checkbox lists, a timeline table,
rollback options and troubleshooting entries. Target: <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def step(n: int) -> str:
    return f"""### Step {n}: Backfill table t{n} (1-{n % 9 + 2} minutes)

Run it from the application directory.

```bash
# Preview
cd /srv/app
source .venv/bin/activate
python scripts/backfill_t{n}.py --dry-run

# Then for real
python scripts/backfill_t{n}.py --commit
grep "error t{n}" /var/log/app.log
# Expected: No matches
```

**Verification**:
```sql
-- rows left
SELECT COUNT(*) FROM t{n} WHERE c IS NULL;
-- Expected: 0
SELECT column_name, is_nullable, data_type FROM information_schema.columns WHERE table_name = 't{n}' AND column_name = 'c';
-- Expected: c | YES | integer
```

- [ ] Tell #ops that t{n} is done
- [ ] Check the dashboard for t{n}

---

"""


def checklist(lines: int) -> str:
    head = """# Deployment Checklist: Generated

**Priority**: high
**Estimated Time**: 2-3 hours
**Risk**: medium

## Deployment Order

```
1. Backfill table t1  ->  2. Backfill table t2  ->  3. Backfill table t3
```

**DO NOT run step 3 before step 1** - this will cause `ProgrammingError: relation t3 missing`

## Pre-Deployment Checklist

- [ ] **Backup database** (full backup recommended)
- [ ] **Verify no long-running transactions** on `t1`

## Deployment Steps

"""
    tail = """## Rollback Plan

### Option 1: Revert (Use if a backfill failed)

```bash
python scripts/revert.py --all
```

## Success Criteria

- [ ] Database migration applied successfully (`alembic current` shows `abc123def456`)

## Known Issues & Troubleshooting

### Issue: "ProgrammingError: relation t3 missing"

**Fix**: run step 1 first.
"""
    body, n = [], 1
    while len((head + "".join(body) + tail).splitlines()) < lines:
        body.append(step(n))
        n += 1
    return head + "".join(body) + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "generated.md"
        source.write_text(checklist(args.lines))
        out = Path(tmp) / "generated.yaml"
        argv = [sys.executable, "-m", "runbook", "import", str(source), "-o", str(out), "--force"]
        first = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, env=ENV)
        assert first.returncode == 0, first.stderr
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(argv, cwd=tmp, capture_output=True, check=True, env=ENV)
            times.append(time.perf_counter() - start)
        explain = [*argv, "--explain"]
        start = time.perf_counter()
        subprocess.run(explain, cwd=tmp, capture_output=True, check=True, env=ENV)
        with_explain = time.perf_counter() - start
        floor = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], capture_output=True, check=True, env=ENV)
            floor.append(time.perf_counter() - start)
        lines = len(source.read_text().splitlines())
        print(f"checklist: {lines:,} lines, {source.stat().st_size:,} bytes -> {first.stdout.splitlines()[0]}")
        print(f"{'what':<40} {'median s':>9} {'target s':>9}  verdict")
        median = statistics.median(times)
        print(f"{'python -c pass (floor)':<40} {statistics.median(floor):>9.3f}")
        print(f"{'runbook import (whole process)':<40} {median:>9.3f} {1.0:>9}  {'ok' if median <= 1.0 else 'MISSED'}")
        print(f"{'runbook import --explain (one run)':<40} {with_explain:>9.3f}")


if __name__ == "__main__":
    main()
