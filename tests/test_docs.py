"""The README and docs/ hold together: every relative link resolves (a file, and a heading
where it names one), every `convtrain VERB` they name is a command, and the README stays a
page a user reads top-down (at most 300 lines; the reference is in docs/)."""

import os
import re

import pytest

from convtrain.cli import main

LINK = re.compile(r"\]\(([^)\s]*)\)")  # an empty target too: a link to nowhere
# a command as a user types it: `convtrain VERB`, `.venv/bin/convtrain VERB`, `$ convtrain
# VERB`, `mpiexec -n 2 convtrain VERB`, at the start of a code span or line
VERB = re.compile(r"^(?:\$ )?(?:\S*/)?(?:\S*mpiexec -n \S+ )?convtrain ([a-z][a-z-]*)\b", re.M)


def _pages(repo_root):
    pages = [os.path.join(repo_root, "README.md")]
    docs = os.path.join(repo_root, "docs")
    pages += [os.path.join(docs, name) for name in sorted(os.listdir(docs))
              if name.endswith(".md")]
    return pages


def _anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    with open(path, encoding="utf-8") as handle:
        text = re.sub(r"```.*?```", "", handle.read(), flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_relative_link_resolves(repo_root):
    broken = []
    for page in _pages(repo_root):
        with open(page, encoding="utf-8") as handle:
            text = re.sub(r"```.*?```", "", handle.read(), flags=re.S)
        for target in LINK.findall(text):
            if not target:
                broken.append(f"{os.path.relpath(page, repo_root)}: []() (an empty link)")
                continue
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) \
                if file_part else page
            if not os.path.exists(path):
                broken.append(f"{os.path.relpath(page, repo_root)}: {target} (no such file)")
            elif anchor and path.endswith(".md") and anchor not in _anchors(path):
                broken.append(f"{os.path.relpath(page, repo_root)}: {target} (no such heading)")
    assert broken == []


def test_every_command_the_docs_name_exists(repo_root):
    named = set()
    for page in _pages(repo_root):
        with open(page, encoding="utf-8") as handle:
            text = handle.read()
        # commands as a user types them: code spans, fenced blocks and indented lines
        code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```.*?```", text, flags=re.S)
        code += [line for line in text.splitlines() if line.startswith("    ")]
        for snippet in code:
            named |= set(VERB.findall(snippet.strip()))
    assert named - set(main.commands) == set()
    assert {"train", "trace", "predict", "export", "eval"} <= named


def test_the_readme_is_short(repo_root):
    with open(os.path.join(repo_root, "README.md"), encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) <= 300
