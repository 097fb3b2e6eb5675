"""The README and docs/ are true on a fresh clone: every image they show is a small committed
file under docs/figures/, and no link points into a git-ignored folder (output/, datasets/,
.venv) that a fresh clone does not have."""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["README.md"] + [os.path.join("docs", f) for f in sorted(os.listdir(
    os.path.join(REPO, "docs"))) if f.endswith(".md")]
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s#]+)[^)]*\)")


def _links(page):
    text = open(os.path.join(REPO, page), encoding="utf-8").read()
    for bang, target in LINK.findall(text):
        if not re.match(r"[a-z]+://", target):
            yield bool(bang), os.path.normpath(os.path.join(os.path.dirname(page), target))


def _ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    return proc.returncode == 0


@pytest.mark.parametrize("page", PAGES)
def test_no_link_into_ignored_folders_and_images_are_committed_figures(page):
    for is_image, target in _links(page):
        assert not _ignored(target), f"{page} links {target}, which git ignores"
        assert not target.startswith(("output", ".venv")), (page, target)
        if is_image:
            assert target.startswith(os.path.join("docs", "figures")), (page, target)
            assert target.endswith(".png") and os.path.isfile(os.path.join(REPO, target)), \
                (page, target)


def test_figures_are_small():
    figures = os.path.join(REPO, "docs", "figures")
    sizes = [os.path.getsize(os.path.join(figures, f)) for f in os.listdir(figures)]
    assert sizes and sum(sizes) < 1_000_000
