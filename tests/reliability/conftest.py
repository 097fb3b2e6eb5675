"""Reports how many generated corrupt files the property tests ran (per loader and in total):
at the end of the terminal summary, and as JSON in $ODEDET_PROPERTY_REPORT when set."""
import json
import os
import sys


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("test_rel_property_corruptions") or next(
        (m for name, m in sys.modules.items() if name.endswith("test_rel_property_corruptions")),
        None)
    counts = dict(getattr(module, "COUNTS", {}) or {})
    if not counts:
        return
    total = sum(counts.values())
    terminalreporter.write_sep("-", f"property tests: {total} generated corrupt files")
    terminalreporter.write_line(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    report = os.environ.get("ODEDET_PROPERTY_REPORT")
    if report:
        with open(report, "w") as f:
            json.dump({"total": total, "per_loader": counts}, f, indent=1)
