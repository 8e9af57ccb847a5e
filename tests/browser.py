"""Browser-test helpers: Playwright driving Debian's Chromium (never `playwright install`), pages
that may not reach the internet, file drops, and accessibility checks run inside the page."""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


class _Shared:
    """One Playwright and one Chromium at a time: each test module that imports the fixture gets its
    own copy of it, and the sync API cannot be started twice in a thread, so count the users."""

    playwright = None
    browser = None
    users = 0
    previous_env: str | None = None


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium for a module's tests; stopped after them, so that Playwright's event
    loop (and the ORM's permission to run beside it) never outlives the browser tests."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    if _Shared.users == 0:
        # Playwright's sync API keeps an asyncio loop in this thread while it lives; the ORM calls
        # the tests and pytest-django make meanwhile are still plain synchronous code.
        _Shared.previous_env = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        _Shared.playwright = sync_playwright().start()
        _Shared.browser = _Shared.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    _Shared.users += 1
    yield _Shared.browser
    _Shared.users -= 1
    if _Shared.users == 0:
        _Shared.browser.close()
        _Shared.playwright.stop()
        if _Shared.previous_env is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = _Shared.previous_env


class Pages:
    """Opens pages that may talk to the live server only; records anything else, and page errors."""

    def __init__(self, browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.origin = urlsplit(base_url).netloc
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.contexts = []

    def _route(self, route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https", "ws", "wss") and urlsplit(url).netloc != self.origin:
            self.outside.append(url)
            route.abort()
        else:
            route.continue_()

    def open(self, path: str = "/", locale: str = "en-US", width: int = 1280, **context_options):
        context = self.browser.new_context(locale=locale, viewport={"width": width, "height": 900},
                                           **context_options)
        context.route("**/*", self._route)
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.goto(self.base_url + path)
        return page

    def open_logged_in(self, user, path: str, password: str = "password", **options):
        """Open `path` after logging in through the admin's own form, as a person would."""
        page = self.open("/admin/login/?next=" + quote(path), **options)
        page.fill("#id_username", user.username)
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.click("input[type=submit]")
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(chromium, live_server):
    """Factory of pages on the live server; fails the test if a page reached out or threw."""
    opened = Pages(chromium, live_server.url)
    yield opened
    opened.close()
    assert not opened.outside, f"pages requested outside the server: {opened.outside}"
    assert not opened.errors, f"uncaught errors in pages: {opened.errors}"


_DROP = """(files) => {
  const transfer = new DataTransfer();
  for (const [name, data, type] of files) {
    const raw = atob(data), bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    transfer.items.add(new File([bytes], name, { type }));
  }
  return transfer;
}"""


def drop_files(page, selector: str, files: list[tuple[str, bytes]]) -> None:
    """Drop files on an element as a person would: dragenter, dragover, drop, with a DataTransfer."""
    transfer = page.evaluate_handle(_DROP, [[name, base64.b64encode(data).decode(), ""] for name, data in files])
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def throttle_uploads(page, bytes_per_second: int) -> None:
    """Slow the page's uploads (Chrome DevTools network emulation) so upload progress is visible."""
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second,
    })


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, [role=button], audio, a[href]')]
  .filter(el => {
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) return !(named || (el.labels && el.labels.length));
    if (el.tagName === 'AUDIO') return !named;
    return !(named || el.textContent.trim());
  })
  .map(el => el.outerHTML.slice(0, 120))"""

# WCAG 2 contrast of every visible text against the first opaque background behind it.
LOW_CONTRAST = """() => {
  const rgba = (s) => { const m = s.match(/[\\d.]+/g) || [0, 0, 0, 0]; return m.map(Number).concat([1]).slice(0, 4); };
  const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => {
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c[3] >= 0.99) return c;
    }
    return [255, 255, 255, 1];
  };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest('[hidden], .visually-hidden, audio, option')) continue;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    if (style.visibility === 'hidden' || style.display === 'none' || box.width === 0 || box.height === 0) continue;
    const fg = rgba(style.color), bg = background(el);
    const mixed = [0, 1, 2].map(i => fg[i] * fg[3] + bg[i] * (1 - fg[3]));
    const [hi, lo] = [lum(mixed), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) failures.push(`${ratio.toFixed(2)} < ${needed}: ${el.tagName} "${el.textContent.trim().slice(0, 40)}"`);
  }
  return failures;
}"""


def check_accessible_basics(page) -> None:
    """Every control is labelled and every text is readable (WCAG AA contrast)."""
    assert page.evaluate(UNLABELLED) == [], "controls without a label"
    assert page.evaluate(LOW_CONTRAST) == [], "text with too little contrast"


# Boxes that scroll sideways: the whole page, or any element whose content is wider than it is
# (a cut-off table cell, a table that must be dragged). What a person misses without scrolling.
SIDEWAYS = r"""() => {
  const root = document.documentElement;
  const found = [];
  if (root.scrollWidth > root.clientWidth) found.push(`page: ${root.scrollWidth} > ${root.clientWidth} px`);
  for (const el of document.querySelectorAll('body *')) {
    // a one-line text box scrolls its own text by nature, as a select does
    if (el.closest('.visually-hidden, [hidden], audio, select, input')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || !['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX)) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).trim().split(/\s+/).join('.') : '');
      found.push(`${name}: ${el.scrollWidth} > ${el.clientWidth} px`);
    }
  }
  return found;
}"""


def sideways(page) -> list[str]:
    """What scrolls sideways on the page as shown (empty when everything fits the window)."""
    return page.evaluate(SIDEWAYS)


def screenshot(page, name: str, folder: Path | None = None, settle: bool = True) -> Path:
    """Save a full-page screenshot in `folder` (default: with the run's files); also into docs/
    with UPDATE_SCREENSHOTS=1. settle=False: without waiting for transitions (a page that keeps
    moving, such as a level meter)."""
    out = (folder or Path(os.environ.get("TEST_RUN_DIR", "/tmp")) / "screenshots") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover effects in the picture
    page.evaluate("window.scrollTo(0, 0)")  # sticky parts (the player bar) where they sit at the top
    # let hover and highlight transitions end (CSS transitions are animations to the page)
    if settle:
        page.evaluate("Promise.all(document.getAnimations().map(a => a.finished))")
    page.screenshot(path=str(out), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" and folder is None:
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(out, DOCS / name)
    return out


def fake_microphone(chromium, wav: Path):
    """Another Chromium (from the same Playwright) whose microphone plays `wav` (looping), with
    the permission granted: what a person speaking into the live page sounds like to it."""
    return _Shared.playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + [
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}"])
