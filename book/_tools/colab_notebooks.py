"""Colab notebooks made from the book's chapters, and the launch button that opens them.

Colab opens ``.ipynb`` files from a GitHub repository, and knows nothing of MyST. As a script
(``make colab``) this module writes one Colab-ready notebook per chapter into ``_build/colab/``,
mirroring the repository's paths (``_build/colab/book/01_....ipynb``):

- the chapter's install cell (tagged ``colab-install``; added before the first code cell if a
  chapter has none) installs ``companion`` from ``repository.url`` in ``_config.yml``, the one place
  the URL is written, pinned to the tag or commit the notebook was made from;
- MyST-only syntax becomes plain Markdown: citations become "(Author year)" from
  ``references.bib``, ``prf:`` directives and admonitions become blockquotes with a bold title,
  dropdowns become ``<details>`` blocks, cross-references become their text.

``--commit-branch colab`` then records ``_build/colab`` as the next commit of the local branch
``colab``, without touching the work tree; ``git push origin colab`` publishes it. The book's
Colab button opens ``{repository.url}/blob/{repository.branch}/book/<chapter>.ipynb``: as a Sphinx
extension (``sphinx.local_extensions`` in ``_config.yml``) this module turns the theme's link to the
``.md`` source into that link.
"""

from __future__ import annotations

import argparse
import codecs
import copy
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL_TAG = "colab-install"

# --------------------------------------------------------------------------------------------------
# Where the package comes from


def repository_url(root: Path = ROOT) -> str:
    """``repository.url`` of ``_config.yml``: the only place the repository's address is written."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = (config.get("repository") or {}).get("url", "").rstrip("/")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"_config.yml: repository.url must be a GitHub repository, got {url!r}")
    return url


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def pinned_ref(root: Path = ROOT) -> str:
    """The tag at HEAD if there is one (a release), otherwise HEAD's full commit hash."""
    try:
        return _git(root, "describe", "--tags", "--exact-match", "HEAD")
    except subprocess.CalledProcessError:
        return _git(root, "rev-parse", "HEAD")


def install_source(root: Path = ROOT) -> str:
    """The pip requirement URL of the package at the version the notebooks are made from."""
    return f"git+{repository_url(root)}@{pinned_ref(root)}"


def install_cell_source(source: str) -> str:
    return (
        "# Install the companion package at the version this notebook was made from. Colab already\n"
        "# has PyTorch; on any other Jupyter, this cell installs the package only if it is missing.\n"
        "import importlib.util\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules or importlib.util.find_spec("companion") is None:\n'
        f'    %pip install -q "companion @ {source}"'
    )


# --------------------------------------------------------------------------------------------------
# MyST -> plain Markdown


def citations(bib_path: Path) -> dict[str, tuple[str, str]]:
    """``{key: (authors, year)}`` with "Park et al.", "Davies and Bouldin", "Hendrycks"."""
    import latexcodec  # noqa: F401  (registers the "ulatex" codec)
    from pybtex.database import parse_file

    def last(person) -> str:
        name = codecs.decode(" ".join(person.last_names), "ulatex")
        return name.replace("{", "").replace("}", "")

    table = {}
    for key, entry in parse_file(str(bib_path)).entries.items():
        names = [last(p) for p in entry.persons.get("author", entry.persons.get("editor", []))]
        if len(names) > 2:
            authors = f"{names[0]} et al."
        else:
            authors = " and ".join(names) or key
        table[key] = (authors, entry.fields.get("year", "n.d."))
    return table


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[^}\s]+)\}\s*(?P<arg>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
_ROLE = re.compile(r"\{(?P<name>[A-Za-z][\w:.+-]*)\}`(?P<body>[^`]*)`")
_TARGET = re.compile(r"^\s*\((?P<label>[^)\s]+)\)=\s*$")  # (label)=
_MATH_LABEL = re.compile(r"(\$\$)\s*\([^)\s]+\)\s*$")  # $$ (label)
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)  # text <target>

_ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger",
                "error", "seealso", "admonition", "margin", "sidebar", "topic", "epigraph"}


class MystToMarkdown:
    """Turns the MyST of one markdown cell into Markdown that Colab and Jupyter render."""

    def __init__(self, cites: dict[str, tuple[str, str]], titles: dict[str, str]):
        self.cites = cites  # {bibtex key: (authors, year)}
        self.titles = titles  # {docname such as "01_open_set_recognition": chapter title}
        self.numbers: dict[str, int] = {}  # like sphinx-proof: "Theorem 2", counted over the book

    def __call__(self, text: str) -> str:
        return "\n".join(self._block(text.split("\n"))).strip("\n")

    # Blocks: fences (directives and code), targets, comments, math labels.
    def _block(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            fence = _FENCE.match(line)
            if fence:
                end = self._closing(lines, i, fence["fence"])
                body = lines[i + 1:end]
                directive = _DIRECTIVE.match(fence["info"].strip())
                if directive:
                    out += self._directive(directive["name"], directive["arg"].strip(), body)
                else:  # a code block: copied as it is
                    out += lines[i:end + 1]
                i = end + 1
                continue
            if _TARGET.match(line) or line.lstrip().startswith("% "):  # label target, comment
                i += 1
                continue
            out.append(self._roles(_MATH_LABEL.sub(r"\1", line)))
            i += 1
        return out

    @staticmethod
    def _closing(lines: list[str], start: int, fence: str) -> int:
        """Index of the fence closing the one opened at ``start`` (the last line if unclosed)."""
        closer = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        for j in range(start + 1, len(lines)):
            if closer.match(lines[j]):
                return j
        return len(lines) - 1

    def _directive(self, name: str, arg: str, body: list[str]) -> list[str]:
        options, body = self._options(body)
        content = self._block(body)
        while content and not content[0].strip():
            content.pop(0)
        while content and not content[-1].strip():
            content.pop()
        kind = name.split(":")[-1]
        title = self._roles(arg)
        if name in ("bibliography", "tableofcontents", "eval-rst") or name.startswith("auto"):
            return []
        if name == "math":
            return ["$$", *body, "$$"]
        if name in ("code-block", "code", "sourcecode", "code-cell"):
            return [f"```{arg}", *body, "```"]
        if name in ("figure", "image"):
            alt = options.get("alt", "") or " ".join(content).strip()
            return [f"![{alt}]({arg})", "", *[f"*{c}*" if c.strip() else c for c in content]]
        if name.startswith("glue"):
            return [f"*(the output `{arg}` appears here when the notebook has run)*"]
        if name in ("dropdown", "toggle") or "dropdown" in options.get("class", "").split():
            if name == "toggle":
                label = "Show"
            elif name == "dropdown" or kind == "admonition":
                label = title or "Details"
            else:  # an admonition or a prf: directive with :class: dropdown
                label = kind.capitalize() + (f": {title}" if title else "")
            return [f"<details><summary>{label}</summary>", "", *content, "", "</details>"]
        if name.startswith("prf:") or kind in ("exercise", "solution", "proof"):
            label = kind.capitalize()
            if kind not in ("proof", "solution") and "nonumber" not in options:
                self.numbers[kind] = self.numbers.get(kind, 0) + 1
                label += f" {self.numbers[kind]}"
            heading = f"**{label}" + (f" ({title})" if title else "") + ".**"
        elif kind in _ADMONITIONS:
            heading = f"**{title}**" if kind == "admonition" and title else f"**{kind.capitalize()}.**"
            if kind != "admonition" and title:
                heading += f" {title}"
        else:  # tab-set, card, grid, ...: keep the content, with the title in bold
            return ([f"**{title}**", ""] if title else []) + content
        return self._quote([heading, "", *content])

    @staticmethod
    def _options(body: list[str]) -> tuple[dict[str, str], list[str]]:
        """Split a directive's ``:key: value`` lines (or a ``---`` YAML block) from its content."""
        options: dict[str, str] = {}
        i = 0
        if body and body[0].strip() == "---":
            end = next((j for j in range(1, len(body)) if body[j].strip() == "---"), 0)
            for line in body[1:end]:
                key, _, value = line.partition(":")
                options[key.strip()] = value.strip()
            i = end + 1
        else:
            while i < len(body) and (m := _OPTION.match(body[i].strip())):
                options[m["key"]] = m["value"]
                i += 1
        return options, body[i:]

    @staticmethod
    def _quote(lines: Iterable[str]) -> list[str]:
        return [f"> {line}".rstrip() for line in lines]

    # Roles, inline.
    def _roles(self, line: str) -> str:
        return _ROLE.sub(lambda m: self._role(m["name"], m["body"]), line)

    def _role(self, name: str, body: str) -> str:
        explicit = _EXPLICIT.match(body)
        text, target = (explicit["text"], explicit["target"]) if explicit else ("", body)
        if name.startswith("cite"):
            keys = [k.strip() for k in target.split(",") if k.strip()]
            found = [self.cites.get(k, (k, "n.d.")) for k in keys]
            if name.split(":")[-1] in ("t", "ts", "author", "authors"):
                return "; ".join(f"{a} ({y})" for a, y in found)
            return "(" + "; ".join(f"{a} {y}" for a, y in found) + ")"
        if name == "doc":
            return text or f"*{self.titles.get(Path(target).name, target)}*"
        if name == "math":
            return f"${body}$"
        if name.startswith("glue"):
            return f"`{target.split(':')[0]}`"
        if name in ("eq", "numref", "ref", "prf:ref", "term", "any", "download", "abbr"):
            return text or (f"({target})" if name == "eq" else target)
        if name in ("code", "kbd", "file", "command", "samp"):
            return f"`{body}`"
        if name in ("sub", "sup"):
            return f"<{name}>{body}</{name}>"
        return text or target


def chapter_titles(book_dir: Path) -> dict[str, str]:
    """``{docname: first top-level heading}`` of every page in ``book/``."""
    titles = {}
    for path in book_dir.glob("*.md"):
        heading = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.M)
        titles[path.stem] = heading.group(1).strip() if heading else path.stem
    return titles


# --------------------------------------------------------------------------------------------------
# Notebooks


SOLUTION_TAG = "hide-cell"  # a collapsed cell in the book: an exercise's solution
# myst-nb's glue (numbers quoted in the text) is a book-build dependency that Colab lacks; there
# the quoted numbers are printed instead.
GLUE_IMPORT = re.compile(r"^from myst_nb import glue$", re.M)
GLUE_STANDIN = ("def glue(name, value, display=True):  # the book quotes these numbers in its text\n"
                "    print(f\"{name} = {value}\")")


def collapse_in_colab(cell) -> None:
    """Show a code cell collapsed in Colab, as the book does: a form cell whose code stays hidden
    until the reader opens it (Colab's ``#@title`` line and ``cellView: form``)."""
    first = cell.source.splitlines()[0] if cell.source else ""
    title = first.lstrip("#").strip() if first.startswith("#") else "Show the code"
    cell.source = f"#@title {title} (double-click to show the code)\n{cell.source}"
    cell.metadata["cellView"] = "form"


def colab_notebook(md_path: Path, source: str, convert: Callable[[str], str]):
    """The Colab-ready notebook of one MyST chapter (no outputs), installing from ``source``."""
    import jupytext
    import nbformat

    nb = jupytext.read(md_path)
    cells = [copy.deepcopy(cell) for cell in nb.cells]
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = convert(cell.source)
        else:
            cell.source = GLUE_IMPORT.sub(GLUE_STANDIN, cell.source)
            if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
                collapse_in_colab(cell)
    install = nbformat.v4.new_code_cell(install_cell_source(source),
                                        metadata={"tags": [INSTALL_TAG]})
    tagged = [i for i, c in enumerate(cells) if INSTALL_TAG in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1:
        raise ValueError(f"{md_path}: more than one cell is tagged {INSTALL_TAG!r}")
    if tagged:
        cells[tagged[0]] = install
    else:  # a chapter without an install cell gets one before its first code cell
        first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
        cells.insert(first_code, install)
    nb.cells = cells
    nb.metadata = nbformat.from_dict({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    })
    return nb


def write_notebooks(out_dir: Path, chapters: Iterable[Path], source: str, root: Path = ROOT,
                    ) -> list[Path]:
    """Write ``out_dir/<path of the chapter>.ipynb`` for each chapter; returns the paths."""
    import nbformat

    convert = MystToMarkdown(citations(root / "references.bib"), chapter_titles(root / "book"))
    written = []
    for md in chapters:
        md = Path(md).resolve()
        target = out_dir / md.relative_to(root).with_suffix(".ipynb")
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = colab_notebook(md, source, convert)
        nbformat.validate(nb)
        nbformat.write(nb, target)
        written.append(target)
    return written


def commit_to_branch(root: Path, tree_dir: Path, branch: str, message: str) -> str:
    """Record ``tree_dir`` as the next commit of ``branch`` (plumbing only: work tree, index and
    current branch stay as they are). Returns the new commit."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), "GIT_WORK_TREE": str(tree_dir)}

        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], check=True, text=True,
                                  capture_output=True, env={**os.environ, **env}).stdout.strip()

        git("add", "--all", "--force", ".")
        tree = git("write-tree")
        try:
            parent = ["-p", git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")]
        except subprocess.CalledProcessError:
            parent = []
        commit = git("commit-tree", tree, *parent, "-m", message)
        git("update-ref", f"refs/heads/{branch}", commit)
    return commit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", type=Path,
                        help="MyST chapters (default: the numbered chapters in book/)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "colab")
    parser.add_argument("--commit-branch", metavar="BRANCH",
                        help="then record the notebooks as the next commit of this local branch")
    args = parser.parse_args(argv)
    chapters = args.chapters or sorted((ROOT / "book").glob("[0-9]*.md"))
    source = install_source()
    if _git(ROOT, "status", "--porcelain", "--untracked-files=no", "--", "companion", "book"):
        print("warning: companion/ or book/ has uncommitted changes; the notebooks install the "
              f"committed version ({source})", file=sys.stderr)
    written = write_notebooks(args.out, chapters, source)
    (args.out / "README.md").write_text(
        "# Colab notebooks\n\n"
        f"Generated by `make colab` from the MyST chapters in `book/` at `{pinned_ref()}` of\n"
        f"{repository_url()}; do not edit them here. Each installs `companion` from\n"
        f"`{source}`.\n", encoding="utf-8")
    for path in written:
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if args.commit_branch:
        commit = commit_to_branch(ROOT, args.out, args.commit_branch,
                                  f"Colab notebooks for {pinned_ref()}")
        print(f"branch {args.commit_branch} is now at {commit[:12]}: publish it with "
              f"`git push origin {args.commit_branch}`")
    return 0


# --------------------------------------------------------------------------------------------------
# Sphinx: the Colab button opens the notebook, not the MyST source


def _colab_links_to_notebooks(app, pagename, templatename, context, doctree) -> None:
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []):
            url = button.get("url", "")
            if button.get("text") == "Colab" and url.endswith(".md"):
                button["url"] = url[: -len(".md")] + ".ipynb"


def setup(app):
    # After sphinx-book-theme's add_launch_buttons (priority 501).
    app.connect("html-page-context", _colab_links_to_notebooks, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    sys.exit(main())
