"""tools/report.py runs a study, writes REPORT.md with the targets table, and refreshes a README's
generated block, linking the plots in the report's output folder."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_report_runs_a_study_and_updates_a_readme_block(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("report_tool", os.path.join(ROOT, "tools/report.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Results\n<!-- results:start -->\nold\n<!-- results:end -->\nkeep\n")
    monkeypatch.setattr(tool, "ROOT", str(tmp_path))
    out = tmp_path / "report"
    assert tool.main(["--out", str(out), "--quick", "--only", "overhead", "--update-readme"]) == 0
    report = (out / "REPORT.md").read_text()
    assert "## Targets" in report and "Solver overhead (fixed grid)" in report
    assert "not measured (run tools/benchmark.py memory)" in report  # absent studies say so
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- results:end -->\nkeep\n")
    assert "### Solver overhead" in text and "](report/benchmarks/overhead/overhead.png)" in text
    assert (out / "benchmarks/overhead/overhead.png").read_bytes()[:4] == b"\x89PNG"
    # a second run reuses the study's JSON instead of recomputing it
    mtime = os.path.getmtime(out / "benchmarks/overhead/overhead.json")
    assert tool.main(["--out", str(out), "--only", "overhead"]) == 0
    assert os.path.getmtime(out / "benchmarks/overhead/overhead.json") == mtime
