"""Every relative Markdown link in the README, the changelog, docs/ and bench/README.md points
to a file that exists, and every ``#anchor`` into a Markdown file names one of its headings.

Anchors follow the slug rule of the page that serves them: GitHub's for every file (the
repository is read there), and also Python-Markdown's (mkdocs' ``toc``) for a link from one
page of docs/ to another, which the documentation site serves. A page of docs/ may link only
inside docs/, since the site has nothing else. ``mkdocs build --strict`` (``.ci/run``) checks
the site again; this test needs no build and covers the files outside docs/ too.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files whose links are checked."""
    files = [root / "README.md", root / "CHANGELOG.md", root / "bench" / "README.md"]
    files += sorted((root / "docs").glob("*.md"))
    return [f for f in files if f.exists()]


FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
# [text](target) and ![alt](target); the text may hold brackets one level deep.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[^)]*)?\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
ATX_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text: str):
    """``(line number, line)`` outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def heading_text(raw: str) -> str:
    """A heading's text as rendered: code spans, links and emphasis reduced to their text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)
    text = re.sub(r"`+([^`]*)`+", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"(\*\*|__|\*)", "", text)
    return text.strip()


def github_slug(text: str) -> str:
    """GitHub's anchor: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def mkdocs_slug(text: str) -> str:
    """Python-Markdown's ``toc.slugify`` (mkdocs' default): ASCII, punctuation dropped, runs of
    spaces and hyphens one hyphen."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> dict[str, set[str]]:
    """The anchors of a Markdown file under each rule, duplicates numbered as each renderer
    numbers them (GitHub ``-1``, Python-Markdown ``_1``); HTML ``<a id>`` count for both."""
    found = {"github": set(), "mkdocs": set()}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        for name in HTML_ANCHOR.findall(line):
            found["github"].add(name)
            found["mkdocs"].add(name)
        match = ATX_HEADING.match(line)
        if not match:
            continue
        text = heading_text(match.group(2))
        for rule, slug, join in (("github", github_slug(text), "-"),
                                 ("mkdocs", mkdocs_slug(text), "_")):
            candidate, n = slug, 0
            while candidate in found[rule]:
                n += 1
                candidate = f"{slug}{join}{n}"
            found[rule].add(candidate)
    return found


def links(path: Path):
    """``(line number, target)`` of every link and image in a Markdown file's prose."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1).strip("<>")
        match = REFERENCE_DEFINITION.match(line)
        if match:
            yield number, match.group(1).strip("<>")


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``path``, one line each (empty: nothing)."""
    docs = root / "docs"
    in_docs = path.parent == docs
    cache: dict[Path, dict[str, set[str]]] = {}
    problems = []
    for number, target in links(path):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a URL: not checked here
        where = f"{path.relative_to(root)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        if file_part.startswith("/"):
            resolved = (root / file_part.lstrip("/")).resolve()
        else:
            resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(root):
            problems.append(f"{where}: points outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}: no such file {resolved.relative_to(root)}")
            continue
        if in_docs and not resolved.is_relative_to(docs):
            problems.append(f"{where}: a docs page may link only inside docs/ (the site has "
                            "nothing else)")
            continue
        if not anchor or resolved.suffix != ".md" or not resolved.is_file():
            continue
        found = cache.setdefault(resolved, anchors(resolved))
        anchor = unquote(anchor)
        if anchor not in found["github"]:
            problems.append(f"{where}: no heading with GitHub's anchor '{anchor}' in "
                            f"{resolved.relative_to(root)}")
        elif in_docs and resolved.parent == docs and anchor not in found["mkdocs"]:
            problems.append(f"{where}: the documentation site (Python-Markdown) gives no "
                            f"heading the anchor '{anchor}' in {resolved.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_check_finds_broken_links(tmp_path):
    """The checker itself: a missing file, a missing heading, a heading whose anchor the two
    renderers spell differently, and a link out of docs/ are reported; good links are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "README.md").write_text("# Bench\n")
    (tmp_path / "docs" / "b.md").write_text(
        "# Page B\n\n## Flow rows of the table: `bench/table/flow_estimates.py`\n\n"
        "## Energy + forces\n\n## Runs\n\n## Runs\n")
    (tmp_path / "README.md").write_text(
        "[good](docs/b.md#flow-rows-of-the-table-benchtableflow_estimatespy)\n"
        "[second of two](docs/b.md#runs-1) [GitHub's](docs/b.md#energy--forces)\n"
        "[missing file](docs/missing.md) [missing heading](docs/b.md#no-such-heading)\n"
        "`[in code](docs/missing.md)` [a URL](https://example.org/missing.md)\n"
        "```\n[in a fence](docs/missing.md)\n```\n")
    (tmp_path / "docs" / "a.md").write_text(
        "[good](b.md#page-b) [same page](#top) [mkdocs only](b.md#energy-forces)\n"
        "[GitHub only](b.md#energy--forces) [out of docs](../bench/README.md)\n\n# Top\n")
    readme = broken_links(tmp_path / "README.md", root=tmp_path)
    assert [p.split(": ", 1)[1] for p in readme] == [
        "docs/missing.md: no such file docs/missing.md",
        "docs/b.md#no-such-heading: no heading with GitHub's anchor 'no-such-heading' in "
        "docs/b.md"]
    page = broken_links(tmp_path / "docs" / "a.md", root=tmp_path)
    assert [p.split(": ", 1)[1].split(":")[0] for p in page] == [
        "b.md#energy-forces", "b.md#energy--forces", "../bench/README.md"]


def test_the_readme_stays_a_front_page():
    """Issue 35: the README is a front page of at most 120 lines; studies go to docs/."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert len(readme.read_text().splitlines()) <= 120


def test_the_bench_readme_says_what_each_script_does_briefly():
    """Issue 35: bench/README.md is at most 300 lines, names every script under bench/, and
    names no script that is not there."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    text = (bench / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    scripts = {p.relative_to(bench).as_posix() for p in bench.glob("*/*")
               if p.suffix == ".py" or p.name == "run_all"}
    unnamed = {s for s in scripts
               if f"### {Path(s).name}" not in text and f"bench/{s}" not in text}
    assert unnamed == set(), "scripts bench/README.md does not describe"
    named = set(re.findall(r"bench/((?:suite|table|peers)/\w+(?:\.py)?)\b", text))
    assert named - scripts == set(), "scripts bench/README.md names that are not there"
