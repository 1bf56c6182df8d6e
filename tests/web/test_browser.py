"""``novaconsole serve`` driven by a real headless Chromium through Playwright.

The console is drawn on a canvas, so what it shows is read from the websocket frames the
server sends the page (the terminal output): the same bytes the browser draws.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic
from typing import Any

import pytest

pytest.importorskip("textual_serve", reason="the web extra (textual-serve) is not installed")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)

from tests.web.support import TOKEN, Served, load_controls, make_project, serve  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "no Chromium installed (apt-get install chromium; .ci/run does it)",
        allow_module_level=True,
    )

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 180_000
"""Upper bound of any one wait in the browser (page loads, the console drawing, a key's
effect): generous, for a loaded 2-core machine where a console takes long to start."""

# A real `novaconsole serve` driven by Chromium: seconds to tens of seconds each.
pytestmark = pytest.mark.slow

OPEN_WEBSOCKET = """url => new Promise(resolve => {
    const socket = new WebSocket(url);
    socket.onopen = () => { socket.close(); resolve("open"); };
    socket.onerror = () => resolve("refused");
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=WAIT_MS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, **options: Any) -> Any:
    """A page whose every navigation and action may take up to :data:`WAIT_MS` (Playwright's
    own 30 s is too short for a loaded machine)."""
    page = browser.new_page(**options)
    page.set_default_timeout(WAIT_MS)
    page.set_default_navigation_timeout(WAIT_MS)
    return page


def _text(payload: str | bytes) -> str:
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload


class Screen:
    """What the server has sent the page's terminal so far, as text."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.chunks: list[str] = []
        self.sockets: list[Any] = []
        page.on("websocket", self._watch)

    def _watch(self, socket: Any) -> None:
        self.sockets.append(socket)
        socket.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        self.chunks.append(_text(payload))

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def wait_until(self, check: Callable[[str], bool], what: str) -> None:
        """Wait for the frames the page receives until ``check(text)`` holds; fail naming
        ``what`` after :data:`WAIT_MS`. Woken by each frame (looked at again at least every
        second, in case the frame that made it true came in between two waits)."""
        deadline = monotonic() + WAIT_MS / 1000
        while not check(self.text):
            left = deadline - monotonic()
            if left <= 0:
                raise AssertionError(f"the console never showed {what} in {WAIT_MS // 1000}s")
            step = min(left, 1.0) * 1000
            try:
                if not self.sockets:
                    self.page.wait_for_event("websocket", timeout=step)
                else:
                    self.sockets[-1].wait_for_event(
                        "framereceived",
                        lambda payload: check(self.text) or check(self.text + _text(payload)),
                        timeout=step,
                    )
            except sync_api.TimeoutError:
                continue

    def wait_for(self, text: str) -> None:
        self.wait_until(lambda seen: text in seen, repr(text))


def wait_for_saved(page: Any, check: Callable[[], bool], what: str) -> None:
    """Wait until the database shows what a key did (the console saves it a moment after
    drawing it); the page keeps running meanwhile."""
    deadline = monotonic() + WAIT_MS / 1000
    while not check():
        if monotonic() > deadline:
            raise AssertionError(f"the database never showed {what} in {WAIT_MS // 1000}s")
        page.wait_for_timeout(100)  # another process's write: looked for again and again


def open_console(browser: Any, served: Served) -> Screen:
    page = new_page(browser, viewport={"width": 1400, "height": 900})
    screen = Screen(page)
    response = page.goto(served.url, wait_until="domcontentloaded")
    assert response is not None and response.status == 200
    screen.wait_for("Handlers")  # the handlers pane's title, then its one row
    screen.wait_for("Toy")
    page.click("#terminal")
    return screen


@pytest.fixture
def project(tmp_path: Path) -> Any:
    """A database of its own per test: a pause one test leaves saved is not another's."""
    return make_project(tmp_path)


def test_the_page_draws_the_console_and_p_pauses_the_fleet(
    browser: Any, project: Any, tmp_path: Path
) -> None:
    with serve(project, "--token", TOKEN) as served:
        screen = open_console(browser, served)
        assert "read-only" not in screen.text
        assert not load_controls(project.db_url).paused
        screen.page.keyboard.press("p")
        screen.wait_for("Pause everything")  # the dialog: no reason, no expiry
        screen.page.keyboard.press("Enter")
        screen.wait_for("PAUSED")
        wait_for_saved(screen.page, lambda: load_controls(project.db_url).paused is True, "paused")
        screen.page.screenshot(path=str(tmp_path / "console.png"))
        screen.page.keyboard.press("p")
        wait_for_saved(
            screen.page, lambda: load_controls(project.db_url).paused is False, "resumed"
        )
        screen.page.close()


def test_a_wrong_token_is_refused(browser: Any, project: Any) -> None:
    with serve(project, "--token", TOKEN) as served:
        page = new_page(browser)
        response = page.goto(f"{served.origin}/?token=not-{TOKEN}")
        assert response is not None and response.status == 401
        assert "unauthorized" in page.content()
        page.close()


def test_a_websocket_from_a_foreign_origin_is_refused(browser: Any, project: Any) -> None:
    with serve(project, "--token", TOKEN) as served:
        socket_url = f"ws://127.0.0.1:{served.port}/ws?token={TOKEN}&width=80&height=24"
        page = new_page(browser)
        # A page of another site (served by Playwright itself) that knows even the token.
        page.route(
            "http://attacker.example/",
            lambda route: route.fulfill(body="<html><body>hi</body></html>"),
        )
        page.goto("http://attacker.example/")
        assert page.evaluate(OPEN_WEBSOCKET, socket_url) == "refused"
        # The same script from the console's own page opens it: the refusal is the Origin.
        page.goto(served.url, wait_until="domcontentloaded")
        assert page.evaluate(OPEN_WEBSOCKET, socket_url) == "open"
        page.close()


def test_read_only_shows_it_and_refuses_p(browser: Any, project: Any) -> None:
    with serve(project, "--token", TOKEN, "--read-only") as served:
        assert not load_controls(project.db_url).paused
        screen = open_console(browser, served)
        screen.wait_for("read-only")
        screen.wait_for("Help")  # the footer is drawn ...
        assert "Pause" not in screen.text  # ... without the keys that change something
        assert "Run once" not in screen.text
        screen.page.keyboard.press("p")
        screen.page.keyboard.press("f")  # a key read-only keeps: once it shows, p was handled
        screen.wait_for("failed")
        assert "PAUSED" not in screen.text
        assert not load_controls(project.db_url).paused
        screen.page.close()
