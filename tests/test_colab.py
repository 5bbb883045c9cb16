"""The Colab notebooks (``make colab``): pinned install, plain Markdown, and one that really runs.

The quick tests check the generator (book/_tools/colab_notebooks.py). The one marked ``colab``
(``make colab-test``) runs chapter 1's generated notebook as Colab would: in a fresh virtual
environment holding only torch, torchvision and ipykernel (hard links to this environment's
installed copies, so nothing is downloaded for them), whose first cell must install ``companion``
and everything else it needs. The install cell's repository URL is swapped for a snapshot of this
working tree; pip fetches the other dependencies from the package index (or its cache).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("colab_notebooks",
                                               ROOT / "book" / "_tools" / "colab_notebooks.py")
colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab)

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupytext")
pytest.importorskip("pybtex")

CHAPTERS = sorted((ROOT / "book").glob("[0-9]*.md"))


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout


def _in_git() -> bool:
    return shutil.which("git") is not None and (ROOT / ".git").exists()


needs_git = pytest.mark.skipif(not _in_git(), reason="needs the git repository")


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    """Every chapter's Colab notebook, written as `make colab` writes them."""
    if not _in_git():
        pytest.skip("needs the git repository")
    out = tmp_path_factory.mktemp("colab")
    paths = colab.write_notebooks(out, CHAPTERS, colab.install_source(ROOT), ROOT)
    return {p.stem: nbformat.read(p, as_version=4) for p in paths}


def test_repository_url_is_written_in_one_place():
    url = colab.repository_url(ROOT)
    address = url.split("://", 1)[1]  # github.com/owner/name
    if _in_git():
        files = _git("ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    else:
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    holders = []
    for name in filter(None, files):
        path = ROOT / name
        if path.is_file() and path.suffix not in (".png", ".jpg", ".pdf", ".pt"):
            if address in path.read_text(encoding="utf-8", errors="ignore"):
                holders.append(name)
    assert holders == ["_config.yml"], f"the repository address appears in {holders}"


@needs_git
def test_each_notebook_installs_this_commit_first(notebooks):
    source = f"git+{colab.repository_url(ROOT)}@{colab.pinned_ref(ROOT)}"
    head = _git("rev-parse", "HEAD").strip()
    assert source.endswith(head) or re.search(r"@v?\d", source), source
    assert len(notebooks) == len(CHAPTERS)
    for name, nb in notebooks.items():
        code = [c for c in nb.cells if c.cell_type == "code"]
        installs = [c for c in code if colab.INSTALL_TAG in c.metadata.get("tags", [])]
        assert len(installs) == 1 and code[0] is installs[0], f"{name}: install cell not first"
        assert f'%pip install -q "companion @ {source}"' in code[0].source, name
        assert not any("%pip" in c.source for c in code[1:]), name
        assert all(not c.get("outputs") for c in code), f"{name}: outputs in a Colab notebook"
        nbformat.validate(nb)


def test_solutions_stay_collapsed_in_colab(notebooks):
    for name, nb in notebooks.items():
        solutions = [c for c in nb.cells if c.cell_type == "code"
                     and colab.SOLUTION_TAG in c.metadata.get("tags", [])]
        assert solutions, f"{name}: no exercise solution (a cell tagged {colab.SOLUTION_TAG})"
        for cell in solutions:
            assert cell.metadata.get("cellView") == "form", name
            assert cell.source.startswith("#@title "), (name, cell.source[:80])


def test_no_book_only_import_in_code(notebooks):
    for name, nb in notebooks.items():
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "myst_nb" not in code, f"{name}: imports myst_nb, which Colab does not have"


def test_markdown_has_no_myst_left(notebooks):
    leftovers = re.compile(r"\{(prf:\w+|cite(:\w+)?|doc|ref|eq|numref|glue(:\w+)?)\}`|"
                           r"^\s*(`{3,}|:{3,})\{|^\(\S+\)=\s*$", re.M)
    for name, nb in notebooks.items():
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                match = leftovers.search(cell.source)
                assert match is None, f"{name}: MyST left in Markdown: {match.group(0)!r}"


def test_myst_to_markdown():
    convert = colab.MystToMarkdown(
        {"park2024understanding": ("Park et al.", "2024"), "davies1979cluster":
         ("Davies and Bouldin", "1979"), "hendrycks2017baseline": ("Hendrycks and Gimpel", "2017")},
        {"02_jacobian_norm": "The Jacobian norm of a representation"})
    text = "\n".join([
        "(sec-results)=",
        "As {cite:t}`park2024understanding` show, DBI {cite:p}`davies1979cluster,hendrycks2017baseline`",
        "drops (chapter {doc}`02_jacobian_norm`, {doc}`that chapter <02_jacobian_norm>`); see {eq}`gap`.",
        "",
        "````{prf:theorem} compaction",
        ":label: thm-compaction",
        "",
        "Minimising $D$ minimises $\\lVert J \\rVert_F$:",
        "",
        "$$",
        "a = b",
        "$$ (gap)",
        "````",
        "",
        ":::{admonition} Solution",
        ":class: dropdown",
        "",
        "```python",
        "print({'x': 1})",
        "```",
        "The gap was {glue:text}`gap:.2f`.",
        ":::",
        "",
        "```{note}",
        "A note.",
        "```",
    ])
    out = convert(text)
    assert "(sec-results)=" not in out
    assert "As Park et al. (2024) show" in out
    assert "DBI (Davies and Bouldin 1979; Hendrycks and Gimpel 2017)" in out
    assert "chapter *The Jacobian norm of a representation*, that chapter); see (gap)." in out
    assert "> **Theorem 1 (compaction).**" in out
    assert "> Minimising $D$ minimises $\\lVert J \\rVert_F$:" in out
    assert "> $$\n> a = b\n> $$\n" in out + "\n"
    assert ":label:" not in out
    assert "<details><summary>Solution</summary>" in out and out.count("</details>") == 1
    assert "```python\nprint({'x': 1})\n```" in out  # code is left alone
    assert "The gap was `gap`." in out
    assert "> **Note.**\n>\n> A note." in out
    # sphinx-proof numbers each kind through the book: the next theorem is Theorem 2
    assert "**Theorem 2.**" in convert("```{prf:theorem}\nx\n```")


def test_commit_to_branch_leaves_the_work_tree_alone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    repo, tree = tmp_path / "repo", tmp_path / "tree"
    (tree / "book").mkdir(parents=True)
    (tree / "book" / "a.ipynb").write_text("{}")
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, text=True,
                                    capture_output=True).stdout.strip()
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (repo / "README.md").write_text("main\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "main")
    first = colab.commit_to_branch(repo, tree, "colab", "notebooks 1")
    (tree / "book" / "a.ipynb").write_text('{"v": 2}')
    second = colab.commit_to_branch(repo, tree, "colab", "notebooks 2")
    assert git("rev-parse", "colab") == second and git("rev-parse", "colab^") == first
    assert git("ls-tree", "-r", "--name-only", "colab") == "book/a.ipynb"
    assert git("branch", "--show-current") == "main" and git("status", "--porcelain") == ""


# --------------------------------------------------------------------------------------------------
# The slow one: a generated notebook in a fresh environment.

FRESH_PACKAGES = ["torch", "torchvision", "ipykernel", "pip"]  # what a Colab runtime starts with


def _closure(names: list[str]) -> list:
    """The installed distributions of ``names`` and of everything they require."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional or platform-specific requirement that is not installed
        found[name] = dist
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def _link_into(sources: list[Path], folder: Path) -> None:
    """Hard-link files and folders into ``folder`` (``cp -al``: seconds for torch's 15,000 files);
    copy them where links are impossible (another file system, no GNU cp)."""
    try:
        subprocess.run(["cp", "-al", "--", *map(str, sources), str(folder)], check=True,
                       capture_output=True)
        return
    except (OSError, subprocess.CalledProcessError):
        pass
    for src in sources:
        if src.is_dir():
            shutil.copytree(src, folder / src.name, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, folder / src.name)


def _remove(folder: Path) -> None:
    subprocess.run(["rm", "-rf", "--", str(folder)], check=False)  # faster than shutil.rmtree
    shutil.rmtree(folder, ignore_errors=True)


def _fresh_venv(where: Path) -> Path:
    """A venv holding only ``FRESH_PACKAGES`` and their requirements; returns its python."""
    _remove(where)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = where / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    top_levels = set()
    for dist in _closure(FRESH_PACKAGES):
        base = Path(dist.locate_file(""))
        for file in dist.files or []:
            if file.parts and file.parts[0] != "..":
                top_levels.add((base, file.parts[0]))
    _link_into(sorted({base / name for base, name in top_levels if (base / name).exists()}), site)
    return python


def _snapshot(dest: Path) -> Path:
    """This working tree as git would commit it now (tracked and new files, no ignored ones)."""
    for name in filter(None, _git("ls-files", "--cached", "--others", "--exclude-standard")
                       .split("\n")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.colab
@needs_git
def test_a_colab_notebook_runs_in_a_fresh_environment(tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    where = ROOT / "_build" / "colab-test"  # beside .venv, so that hard links work
    python = _fresh_venv(where / "venv")
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
    present = subprocess.run([python, "-c", probe % ["torch", "torchvision", "ipykernel", "companion",
                                                      "sklearn", "pandas", "seaborn"]],
                             check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert present == "['torch', 'torchvision', 'ipykernel']", present

    chapter = ROOT / "book" / "01_open_set_recognition.md"
    source = colab.install_source(ROOT)
    [path] = colab.write_notebooks(tmp_path / "colab", [chapter], source, ROOT)
    nb = nbformat.read(path, as_version=4)
    install = nb.cells[[c.cell_type for c in nb.cells].index("code")]
    local = f"file://{_snapshot(tmp_path / 'src')}"
    assert source in install.source
    install.source = install.source.replace(source, local)  # this tree instead of the repository

    kernels = tmp_path / "jupyter" / "kernels" / "colab-test"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
        '"display_name": "colab-test", "language": "python"}' % python)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("COMPANION_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(nb, kernel_name="colab-test", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
        installed = subprocess.run([python, "-c", "import companion; print(companion.__file__)"],
                                   check=True, capture_output=True, text=True, cwd=tmp_path).stdout
        assert str(where) in installed  # installed into the fresh venv, not found elsewhere
    except CellExecutionError as error:
        pip_output = "".join(o.get("text", "") for o in install.get("outputs", []))
        pip_output = "\n".join(line for line in pip_output.splitlines() if "is ignored" not in line)
        pytest.fail(f"{error}\n--- install cell output ---\n{pip_output}")
    finally:
        _remove(where)
