"""The built book in a real browser: every page as a reader with no network sees it.

Reads the fast build that ``make book-strict`` writes (``_build/fast/_build/html``; ``BOOK_HTML``
points elsewhere), serves it on localhost and loads every page in headless Chromium (Debian's
``chromium``, driven by Playwright; ``CHROMIUM`` names another binary) with every request to
another host refused, then checks what a reader would see:

- formulas typeset by the MathJax copy inside the book, no raw TeX left in the visible text;
- every image loaded, with a non-zero natural size; no local file missing (HTTP 404);
- no error output: no stderr or traceback cells, no "Traceback" in an output;
- one theorem box (sphinx-proof's ``div.proof``) for each ``prf:`` directive of the page's source,
  and no raw MyST syntax in the visible text;
- no broken internal link: every local ``href`` names a file of the build, and its ``#anchor`` an
  id on the target page;
- no request to another host and no JavaScript error;
- readable layout: no output figure shown at under 60% of its natural width (its labels would
  shrink below legibility), no code block that scrolls sideways, no table cut off on the right;
- the Colab button opens the chapter's generated notebook (see book/_tools/colab_notebooks.py).

Skipped, with the reason, when the build or the browser is missing; ``make browser`` sets
``REQUIRE_BROWSER=1``, which turns those skips into failures.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "fast" / "_build" / "html"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Text a reader must never see outside code: TeX that MathJax did not typeset, MyST that Sphinx
# did not parse.
RAW_TEX = re.compile(r"\\[()\[\]]|\$\$|\\(begin|end)\{|\\[A-Za-z]{2,}\b")
RAW_MYST = re.compile(r"\{(prf:\w+|cite(:\w+)?|doc|ref|eq|numref|glue(:\w+)?)\}|^(```|:::)\{", re.M)
PRF_DIRECTIVE = re.compile(r"^\s*(`{3,}|:{3,})\{prf:(\w+)\}", re.M)

# Runs in each page once it has loaded: waits for MathJax and the images, then reports.
PAGE_REPORT_JS = r"""
async () => {
  const settle = (promise, ms) => Promise.race([promise, new Promise(r => setTimeout(r, ms))]);
  const mathNodes = [...document.querySelectorAll('.math')];
  let mathjax = false;
  if (mathNodes.length) {
    // The deferred MathJax script defines MathJax.startup; its promise resolves once typeset.
    for (let waited = 0; waited < 10000 && !(window.MathJax && MathJax.startup); waited += 100)
      await new Promise(r => setTimeout(r, 100));
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await settle(MathJax.startup.promise, 20000);
      mathjax = true;
    }
  }
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await settle(Promise.all(images.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r); }))), 20000);

  // Visible text outside code and outside MathJax's own output.
  const skip = 'script, style, noscript, pre, code, kbd, samp, textarea, .highlight, mjx-container';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    if (!parent.getClientRects().length) continue;  // not rendered (display: none)
    texts.push(node.textContent);
  }
  return {
    url: location.href,
    mathjax,
    math: mathNodes.length,
    mathUntypeset: mathNodes.filter(e => !e.querySelector('mjx-container'))
                            .map(e => e.textContent.trim().slice(0, 80)),
    text: texts.join(' '),
    images: images.map(img => ({src: img.currentSrc || img.src, complete: img.complete,
                                width: img.naturalWidth, height: img.naturalHeight})),
    errorOutputs: [...document.querySelectorAll(
        '.output.stderr, .output.traceback, .output.error, .cell_output .traceback')]
        .map(e => e.innerText.slice(0, 200)),
    outputText: [...document.querySelectorAll('.cell_output')].map(e => e.innerText).join('\n'),
    proofs: [...document.querySelectorAll('div.proof')].map(e => ({
        className: e.className, visible: e.getClientRects().length > 0,
        title: (e.querySelector('.admonition-title') || {innerText: ''}).innerText})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    // Layout in the text column, for the images, code and tables a reader can see.
    column: (document.querySelector('article.bd-article') || document.body).clientWidth,
    outputImages: [...document.querySelectorAll('.cell_output img')]
        .filter(img => img.getClientRects().length && img.naturalWidth)
        .map(img => ({src: img.currentSrc || img.src, natural: img.naturalWidth,
                      shown: img.getBoundingClientRect().width})),
    overflowingCode: [...document.querySelectorAll('pre')]
        .filter(pre => pre.getClientRects().length && pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => ({overflow: pre.scrollWidth - pre.clientWidth,
                      line: pre.textContent.split('\n')
                               .reduce((a, b) => b.length > a.length ? b : a, '').slice(0, 100)})),
    // A table wider than its box is cut off unless some box around it scrolls sideways.
    cutTables: [...document.querySelectorAll('article table')].filter(table => {
        if (!table.getClientRects().length) return false;
        if (table.getBoundingClientRect().width <= table.parentElement.clientWidth + 1) return false;
        for (let box = table.parentElement; box && box.tagName !== 'ARTICLE';
             box = box.parentElement) {
          if (['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) return false;
        }
        return true;
      }).map(table => table.innerText.slice(0, 80)),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
           .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
  };
}
"""


def _missing(reason: str):
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail(reason)
    pytest.skip(reason)


def _is_redirect(page: Path) -> bool:
    """The root index.html that Jupyter Book writes is only a meta refresh to book/index.html."""
    return bool(re.search(r'http-equiv="?refresh', page.read_text(encoding="utf-8")[:2000], re.I))


def _pages() -> list[Path]:
    return sorted(p for p in HTML.rglob("*.html") if "_static" not in p.relative_to(HTML).parts)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """Serve the build on a free localhost port; yields the base URL."""
    if not (HTML / "book" / "index.html").exists():
        _missing(f"no built book at {HTML}: run `make book-strict` (or set BOOK_HTML)")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def reports(site):
    """Load every page once; ``(reports by page, external requests, local 4xx/5xx, JS errors)``."""
    if not CHROMIUM:
        _missing("no chromium on PATH: apt-get install chromium (.ci/run does), or set CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: make install")
    host = urlsplit(site).netloc
    external, failed, js_errors, by_page = [], [], [], {}

    def only_local(route):
        if urlsplit(route.request.url).netloc == host or route.request.url.startswith("data:"):
            route.continue_()
        else:  # as if the reader had no network
            external.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        # Playwright gives the browser a fresh temporary profile (its own --user-data-dir).
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route("**/*", only_local)
            page = context.new_page()
            page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
            page.on("pageerror", lambda e: js_errors.append(f"{page.url}: {e}"))
            for path in _pages():
                if _is_redirect(path):
                    continue
                rel = path.relative_to(HTML).as_posix()
                page.goto(f"{site}/{rel}", wait_until="load", timeout=60_000)
                by_page[rel] = page.evaluate(PAGE_REPORT_JS)
        finally:
            browser.close()
    return by_page, external, failed, js_errors


def _source(rel: str) -> Path | None:
    """The MyST source of a built page, when it has one (``book/03_x.html`` -> ``book/03_x.md``)."""
    source = ROOT / Path(rel).with_suffix(".md")
    return source if source.exists() else None


def _toc_files() -> list[str]:
    """The pages that ``_toc.yml`` lists, as ``book/name`` (no suffix), in order."""
    import yaml

    def walk(node):
        if isinstance(node, dict):
            yield from ([node["file"]] if "file" in node else [])
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"], *walk(toc.get("chapters", toc.get("parts", [])))]


def test_every_page_of_the_toc_was_loaded(reports):
    by_page = reports[0]
    pages = [f"{name}.html" for name in _toc_files()]
    assert set(pages) <= set(by_page), f"not built: {sorted(set(pages) - set(by_page))}"


def test_math_is_typeset_offline(reports):
    by_page = reports[0]
    problems = []
    for rel, r in by_page.items():
        if r["math"] and not r["mathjax"]:
            problems.append(f"{rel}: {r['math']} formulas but MathJax did not load")
        if r["mathUntypeset"]:
            problems.append(f"{rel}: {len(r['mathUntypeset'])} of {r['math']} formulas not "
                            f"typeset, e.g. {r['mathUntypeset'][0]!r}")
        raw = RAW_TEX.search(r["text"])
        if raw:
            context = r["text"][max(raw.start() - 40, 0):raw.end() + 40]
            problems.append(f"{rel}: raw TeX in the visible text: ...{context}...")
    assert any(r["math"] for r in by_page.values()), "no page has any formula: wrong build?"
    assert not problems, "\n".join(problems)


def test_every_image_loads(reports):
    by_page, _, failed, _ = reports
    broken = [f"{rel}: {img['src']}" for rel, r in by_page.items() for img in r["images"]
              if not (img["complete"] and img["width"] > 0 and img["height"] > 0)]
    assert any(r["images"] for r in by_page.values()), "no page has any image: wrong build?"
    assert not broken, "images that did not load:\n" + "\n".join(broken)
    assert not failed, "local files the pages asked for and did not get:\n" + "\n".join(failed)


def test_no_error_output(reports):
    problems = []
    for rel, r in reports[0].items():
        problems += [f"{rel}: error output: {text!r}" for text in r["errorOutputs"]]
        if re.search(r"Traceback \(most recent call last\)|^\w+(Error|Exception): ", r["outputText"],
                     re.M):
            problems.append(f"{rel}: a traceback in a cell's output")
    assert not problems, "\n".join(problems)


def test_theorem_boxes_where_the_source_has_them(reports):
    problems = []
    for rel, r in reports[0].items():
        source = _source(rel)
        if source is None:
            continue
        expected = [kind for _, kind in PRF_DIRECTIVE.findall(source.read_text(encoding="utf-8"))]
        boxes = r["proofs"]
        if len(boxes) != len(expected):
            problems.append(f"{rel}: {len(expected)} prf: directives in {source.name}, "
                            f"{len(boxes)} theorem boxes on the page")
        for kind, box in zip(expected, boxes):
            if kind not in box["className"].split() or not box["visible"]:
                problems.append(f"{rel}: expected a visible {kind} box, got {box}")
        raw = RAW_MYST.search(r["text"])
        if raw:
            problems.append(f"{rel}: raw MyST in the visible text: {raw.group(0)!r}")
    assert not problems, "\n".join(problems)


def test_no_broken_internal_link(reports, site):
    by_page = reports[0]
    ids = {rel: set(r["ids"]) for rel, r in by_page.items()}
    broken = set()
    for rel, r in by_page.items():
        for href in r["links"]:
            url = urlsplit(href)
            if f"{url.scheme}://{url.netloc}" != site:
                continue  # another site, mailto:, javascript:: not checked offline
            target = unquote(url.path).lstrip("/") or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (HTML / target).is_file():
                broken.add(f"{rel}: {href} (no such file)")
            elif url.fragment and target.endswith(".html"):
                if target not in ids:  # a page not loaded (the root redirect): read its ids
                    text = (HTML / target).read_text(encoding="utf-8")
                    ids[target] = set(re.findall(r'\b(?:id|name)="([^"]+)"', text))
                if unquote(url.fragment) not in ids[target]:
                    broken.add(f"{rel}: {href} (no #{unquote(url.fragment)} on {target})")
    for page in filter(_is_redirect, _pages()):  # not loaded: check where it sends the reader
        target = re.search(r'url=([^"\'>]+)', page.read_text(encoding="utf-8"), re.I)
        if not (target and (page.parent / target.group(1)).is_file()):
            broken.add(f"{page.relative_to(HTML)}: redirects to a missing page")
    assert not broken, "broken internal links:\n" + "\n".join(sorted(broken))


# A figure wider than the text column is scaled down to fit it; below this share of its natural
# width, labels drawn at 10-12 pt shrink under about 7 px (chapter figures are drawn about 7 in wide
# at 100 dpi, about the column's 690 px).
MIN_FIGURE_SCALE = 0.6


def test_figures_fit_the_text_column(reports):
    """No figure is shrunk so much that its labels become unreadable."""
    shrunk = [f"{rel}: {img['src'].rsplit('/', 1)[-1]} drawn {img['natural']} px wide, shown at "
              f"{img['shown']:.0f} px ({img['shown'] / img['natural']:.0%})"
              for rel, r in reports[0].items() for img in r["outputImages"]
              if img["shown"] < MIN_FIGURE_SCALE * img["natural"]]
    assert any(r["outputImages"] for r in reports[0].values()), "no figure in any output"
    assert not shrunk, ("figures shrunk to fit the text column (draw them at most about 7 in "
                        "wide, panels in rows of two):\n" + "\n".join(shrunk))


def test_no_code_or_table_is_cut_off(reports):
    """Code fits the column (or wraps) and a wide table scrolls in its own box."""
    problems = []
    for rel, r in reports[0].items():
        problems += [f"{rel}: code runs {c['overflow']} px past its box: {c['line']!r}"
                     for c in r["overflowingCode"]]
        problems += [f"{rel}: table cut off on the right: {text!r}" for text in r["cutTables"]]
    assert not problems, "\n".join(problems)


# sphinx-thebe 0.3.1 adds its one-line configuration script twice under Jupyter Book 1, so the
# second `const THEBE_JS_URL` fails; harmless (the first one holds, and live code is not enabled).
KNOWN_SCRIPT_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def test_no_network_and_no_script_error(reports):
    _, external, _, js_errors = reports
    assert not external, ("the pages need the network (requests refused):\n"
                          + "\n".join(sorted(set(external))))
    js_errors = [e for e in js_errors if not e.endswith(KNOWN_SCRIPT_ERRORS)]
    assert not js_errors, "JavaScript errors:\n" + "\n".join(js_errors)


def test_colab_button_opens_the_generated_notebook(reports):
    """Each chapter's Colab button: the chapter's .ipynb on the branch `make colab-branch` fills."""
    import yaml

    repository = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    owner_name = repository["url"].rstrip("/").split("github.com/")[1]
    chapters = [name for name in _toc_files() if re.match(r"book/\d", name)]
    assert chapters, "no numbered chapter in _toc.yml"
    for name in chapters:
        rel = f"{name}.html"
        expected = (f"https://colab.research.google.com/github/{owner_name}/blob/"
                    f"{repository['branch']}/{name}.ipynb")
        colab_links = [h for h in reports[0][rel]["links"] if "colab.research.google.com" in h]
        assert colab_links == [expected], f"{rel}: Colab button {colab_links}, expected {expected}"
