"""``python -m odedet`` (or the ``odedet`` console script): the command-line tools, one line each.

  python -m odedet                  # list the tools
  python -m odedet configs          # list the configs that --config-file accepts by name
  python -m odedet TOOL [ARGS...]   # run tools/TOOL.py, e.g. python -m odedet train_net --help
"""
from __future__ import annotations

import ast
import os
import runpy
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.environ.get("ODEDET_TOOLS") or os.path.join(REPO, "tools")


def tools() -> dict:
    """tool name -> first line of its docstring, for every tools/*.py (read, not imported)."""
    out = {}
    if not os.path.isdir(TOOLS):
        return out
    for name in sorted(os.listdir(TOOLS)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        with open(os.path.join(TOOLS, name), encoding="utf-8") as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        out[name[:-3]] = doc.strip().split("\n")[0].strip()
    return out


def _list() -> int:
    found = tools()
    if not found:
        print(f"odedet's tools live in the repository's tools/ folder, not found at {TOOLS} "
              "(set ODEDET_TOOLS, or use a clone of the repository)")
        return 1
    width = max(map(len, found))
    print(f"odedet tools (in {TOOLS}; run one with `python -m odedet TOOL ARGS` "
          "or `python tools/TOOL.py ARGS`, --help on each):\n")
    for name, line in found.items():
        print(f"  {name:<{width}}  {line}")
    print("\n  configs  the configs --config-file accepts by name (python -m odedet configs)")
    return 0


def _configs() -> int:
    from odedet.config_check import config_names, config_root

    root = config_root()
    print(f"Configs under {root} (--config-file takes these paths, or a file name found once):")
    for name in config_names(root):
        print(f"  {name}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "list"):
        return _list()
    if argv[0] == "configs":
        return _configs()
    name = argv[0][:-3] if argv[0].endswith(".py") else argv[0]
    if name not in tools():
        import difflib

        close = difflib.get_close_matches(name, list(tools()), n=3)
        print(f"odedet: no tool {argv[0]!r}" + (f"; did you mean {', '.join(close)}?" if close
                                               else "") + " (python -m odedet lists them)",
              file=sys.stderr)
        return 2
    path = os.path.join(TOOLS, name + ".py")
    sys.argv = [path, *argv[1:]]
    sys.path.insert(0, TOOLS)
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
