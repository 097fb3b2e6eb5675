"""Benchmark outputs: one JSON, one markdown table and PNG plots per subcommand, each recording
the machine, thread count and library versions the figures were measured with."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import sys


def environment() -> dict:
    """Machine, threads and versions (``odedet.env.collect``) plus CPU model and core count."""
    from odedet.env import collect

    env = dict(collect())
    env["cpu"] = _cpu_model()
    kind = _cpu_kind()
    if kind:
        env["cpu kind"] = kind
    env["cpu cores"] = str(os.cpu_count())
    env["measured at"] = datetime.datetime.now().isoformat(timespec="seconds")
    try:  # how busy the machine was (1-minute load average; 2.0 = both of 2 cores busy)
        env["load average"] = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    return env


def command_line(script: str | None = None, argv=None) -> str:
    """The command that is running, as a user would type it (for 'reproduce with'). A tool whose
    ``main(argv)`` is called in-process passes its own ``script`` path and ``argv``: sys.argv is
    then the caller's (e.g. pytest's), not the tool's."""
    import shlex

    argv = [script, *argv] if script is not None and argv is not None else list(sys.argv)
    if argv and argv[0].endswith(".py"):
        argv[0] = os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]
        return "python " + " ".join(shlex.quote(a) for a in argv)
    return " ".join(shlex.quote(a) for a in argv)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_kind() -> str:
    """Family/model and widest vector unit of the CPU, e.g. "family 25 model 1, AVX2": machines
    that all call themselves "AMD EPYC" here differ ~1.6x in training speed (the generation and
    AVX-512 or not), which the model name alone does not tell. "" where /proc/cpuinfo is absent."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        return ""
    flags = set(info.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else \
        "AVX" if "avx" in flags else ""
    parts = [f"family {info['cpu family']} model {info['model']}"
             if "cpu family" in info and "model" in info else "", simd]
    return ", ".join(p for p in parts if p)


def environment_line(env: dict) -> str:
    """One line for plot footers and table captions."""
    return (
        f"{env.get('cpu', '?')}"
        + (f" [{env['cpu kind']}]" if env.get("cpu kind") else "")
        + f" ({env.get('cpu cores', '?')} cores), "
        f"{env.get('torch threads', '?')} torch threads, torch {env.get('torch', '?')}, "
        f"torchdiffeq {env.get('torchdiffeq', '?')}, detectron2 {env.get('detectron2', '?')}"
        + (f", load average {env['load average']}" if env.get("load average") else "")
    )


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (dicts); ``columns`` picks and orders the keys."""
    if not rows:
        return "_(no rows)_\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def table(title: str, rows: list[dict], columns: list[str] | None = None) -> dict:
    """One table of a benchmark document; ``columns`` picks and orders the row keys shown."""
    columns = columns or (list(rows[0]) if rows else [])
    return dict(title=title, columns=columns, rows=rows)


def write_outputs(
    out_dir: str, name: str, *, title: str, tables: list[dict], extra: dict | None = None,
    notes: list[str] | None = None, plots: list[str] | None = None, env: dict | None = None,
) -> dict:
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir``; returns the JSON document.

    ``tables`` come from :func:`table`; ``extra`` holds summary figures (ratios, targets) listed
    under the tables; ``notes`` are sentences (what was measured, how); ``plots`` are PNG file
    names already written into ``out_dir``, linked from the markdown.
    """
    os.makedirs(out_dir, exist_ok=True)
    env = env or environment()
    doc = dict(benchmark=name, title=title, environment=env, command=command_line(),
               tables=tables, summary=extra or {}, notes=notes or [], plots=plots or [])
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(doc, f, indent=2, default=str)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
        f.write(render_markdown(doc))
    return doc


def render_markdown(doc: dict, heading: str = "##", image_prefix: str = "") -> str:
    """The markdown section of one benchmark document (as written by :func:`write_outputs`);
    ``image_prefix`` is prepended to plot paths (for a report living in another folder)."""
    parts = [f"{heading} {doc['title']}\n"]
    for tab in doc["tables"]:
        if len(doc["tables"]) > 1:
            parts.append(f"**{tab['title']}**\n")
        parts.append(markdown_table(tab["rows"], tab["columns"]))
    if doc.get("summary"):
        parts += [f"- **{k}**: {_fmt(v)}" for k, v in doc["summary"].items()]
        parts.append("")
    parts += [f"{n}\n" for n in doc.get("notes", [])]
    parts += [f"![{p}]({image_prefix}{p})\n" for p in doc.get("plots", [])]
    parts.append(f"_Measured on {environment_line(doc['environment'])}; "
                 f"{doc['environment'].get('measured at', '')}._\n")
    if doc.get("command"):
        parts.append(f"Reproduce: `{doc['command']}`\n")
    return "\n".join(parts)


def new_figure(title: str, xlabel: str, ylabel: str):
    """A matplotlib (Agg) figure and axes with labels; pair with :func:`save_figure`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save_figure(fig, out_dir: str, filename: str, env: dict) -> str:
    """Save with the environment line as a footer; returns the file name (relative)."""
    import matplotlib.pyplot as plt

    fig.text(0.01, 0.005, environment_line(env), fontsize=6, color="0.4", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(os.path.join(out_dir, filename), dpi=110)
    plt.close(fig)
    return filename
