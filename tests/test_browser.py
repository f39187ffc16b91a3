"""The built book in a real browser: Debian's headless Chromium, driven by playwright-python.

Every page of the book is opened at 400 px (a phone) and 1400 px (a desktop), offline: the site is
served from 127.0.0.1 and every other request is aborted. On each page:

- the table of contents opens and closes (the ☰ button; below 992 px also the contents button);
- every formula is typeset by MathJax (served from the site) and no raw TeX is left;
- nothing is wider than the viewport (no horizontal scrolling of the page);
- no JavaScript error is raised or logged;
- every image loads.

Screenshots go to the test's temporary folder (`<width>px-<page>.png`, and `-menu.png` with the
menu open). Skipped with the reason when playwright or Chromium is missing; `.ci/run` installs both.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CNNLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
WIDTHS = (400, 1400)
HEIGHT = 900
NARROW = 992  # below this the theme turns the sidebars into drawers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright is not installed (pip install -r requirements.txt)"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, as .ci/run does)"),
]

SIDEBAR_SHOWN = """(selector) => {
  const el = document.querySelector(selector);
  if (!el) return null;
  const r = el.getBoundingClientRect(), s = getComputedStyle(el);
  return r.width > 40 && r.right > 40 && r.left < window.innerWidth - 40
    && s.visibility !== 'hidden' && s.display !== 'none' && parseFloat(s.opacity || '1') > 0.1;
}"""

MATH_STATE = """async () => {
  const maths = [...document.querySelectorAll('span.math, div.math')];
  if (maths.length && window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const untypeset = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
  const clone = document.querySelector('main, article, body').cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, .highlight').forEach(e => e.remove());
  const text = clone.textContent;
  return {count: maths.length, untypeset, rawTeX: /\\$\\$|\\\\\\(|\\\\\\[/.test(text), hasMathJax: !!window.MathJax};
}"""

IMAGES = """async () => {
  const imgs = [...document.images];
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(book):
    html_dir, _ = book
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(html_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield html_dir, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def book_pages(html_dir: Path) -> list[str]:
    pages = [p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")]
    return sorted(p for p in pages
                  if not p.startswith(("_static/", "_sources/")) and p not in ("index.html", "genindex.html"))


def toggle_checks(page, width: int) -> list[str]:
    """Open and close the menu (and, on a phone, the contents drawer); returns what failed.

    A sidebar counts as shown when it lies on the screen, at least 40 px wide, and is visible."""
    problems = []
    drawers = [(".bd-sidebar-primary", ".primary-toggle")]
    if width < NARROW:
        drawers.append((".bd-sidebar-secondary", ".secondary-toggle"))
    for sidebar, button in drawers:
        if page.evaluate(SIDEBAR_SHOWN, sidebar) is None:
            continue  # the page has no such sidebar (a page without sections has no contents)
        toggles = page.locator(f"{button}:visible")
        if toggles.count() == 0:
            if sidebar.endswith("secondary"):
                continue
            problems.append(f"no visible {button} button")
            continue
        before = page.evaluate(SIDEBAR_SHOWN, sidebar)
        if width < NARROW and before:
            problems.append(f"{sidebar} is open before the button is pressed")
        toggles.first.click()
        page.wait_for_timeout(450)
        opened = page.evaluate(SIDEBAR_SHOWN, sidebar)
        if opened == before:
            problems.append(f"{button} did not {'close' if before else 'open'} {sidebar}")
            continue
        if width < NARROW:
            # A drawer closes when the dimmed page beside it is tapped.
            page.mouse.click(10 if sidebar.endswith("secondary") else width - 10, HEIGHT // 2)
        else:
            page.locator(f"{button}:visible").first.click()
        page.wait_for_timeout(450)
        if page.evaluate(SIDEBAR_SHOWN, sidebar) != before:
            problems.append(f"{sidebar} did not go back after a second tap")
    return problems


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_in_the_browser(site, browser, width, tmp_path):
    html_dir, base = site
    pages = book_pages(html_dir)
    assert len(pages) >= 14, pages
    context = browser.new_context(viewport={"width": width, "height": HEIGHT}, service_workers="block")
    blocked = []

    def route(r):
        if r.request.url.startswith(base) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    failures, maths_pages = [], 0
    for name in pages:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.goto(base + name, wait_until="load")
        math = page.evaluate(MATH_STATE)
        maths_pages += math["count"] > 0
        if math["untypeset"]:
            failures.append(f"{name} @{width}: formulas not typeset: {math['untypeset'][:3]}")
        if math["rawTeX"]:
            failures.append(f"{name} @{width}: raw TeX delimiters in the text")
        if math["count"] == 0 and math["hasMathJax"]:
            failures.append(f"{name} @{width}: MathJax loaded on a page without maths")
        broken = page.evaluate(IMAGES)
        if broken:
            failures.append(f"{name} @{width}: images that do not load: {broken}")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            wide = page.evaluate("""(w) => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 1
                             && !e.closest('.bd-sidebar-primary, .bd-sidebar-secondary'))
                .slice(0, 3)
                .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))""",
                                 width)
            failures.append(f"{name} @{width}: page is {scroll_width} px wide: {wide}")
        shot = tmp_path / f"{width}px-{name.replace('/', '_').removesuffix('.html')}.png"
        page.screenshot(path=str(shot))
        failures += [f"{name} @{width}: {r}" for r in toggle_checks(page, width)]
        if width < NARROW and page.locator(".primary-toggle:visible").count():
            page.locator(".primary-toggle:visible").first.click()  # the menu open, for the screenshot
            page.wait_for_timeout(450)
            page.screenshot(path=str(shot.with_name(shot.stem + "-menu.png")))
        failures += [f"{name} @{width}: {e}" for e in errors]
        page.close()
    context.close()
    print(f"{len(pages)} pages at {width} px, {maths_pages} with maths; screenshots in {tmp_path}")
    assert maths_pages >= 5, "fewer pages with typeset maths than chapters that have formulas"
    assert not blocked, f"requests that would need the network: {sorted(set(blocked))[:10]}"
    assert not failures, "\n".join(failures)
