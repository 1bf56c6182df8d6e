"""The server's door: token, Host and Origin, checked over plain HTTP against a real server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("textual_serve", reason="the web extra (textual-serve) is not installed")

from tests.web.support import TOKEN, Served, clean_env, make_project, serve

# Every test runs the real `novaconsole serve` (a second or more each).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = make_project(tmp_path_factory.mktemp("serve"))
    with serve(project, "--token", TOKEN) as server:
        yield server


def get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=120)


def test_the_printed_url_opens_the_page_and_sets_the_cookie(served: Served) -> None:
    response = get(served.url)
    assert response.status_code == 200
    assert "textual-terminal" in response.text
    cookie = response.headers["set-cookie"]
    assert f"novaconsole_serve_{served.port}={TOKEN}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_binds_loopback_by_default(served: Served) -> None:
    assert served.origin.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("path", ["/", "/ws", "/static/js/textual.js"])
def test_no_token_is_refused(served: Served, path: str) -> None:
    assert get(served.origin + path).status_code == 401


def test_a_wrong_token_is_refused(served: Served) -> None:
    assert get(f"{served.origin}/?token=wrong-{TOKEN}").status_code == 401


def test_the_cookie_stands_for_the_token(served: Served) -> None:
    cookie = f"novaconsole_serve_{served.port}={TOKEN}"
    assert get(served.origin + "/static/js/textual.js", Cookie=cookie).status_code == 200
    wrong = f"novaconsole_serve_{served.port}=nope"
    assert get(served.origin + "/static/js/textual.js", Cookie=wrong).status_code == 401


def test_a_foreign_host_is_refused_even_with_the_token(served: Served) -> None:
    # DNS rebinding: another name resolving to 127.0.0.1.
    response = get(served.url, Host=f"attacker.example:{served.port}")
    assert response.status_code == 403
    assert get(served.url, Host=f"localhost:{served.port}").status_code == 200


def test_a_foreign_origin_is_refused_even_with_the_token(served: Served) -> None:
    assert get(served.url, Origin="http://attacker.example").status_code == 403
    # Another port on the same host is another origin (though the same site for cookies).
    assert get(served.url, Origin="http://127.0.0.1:1").status_code == 403
    assert get(served.url, Origin=served.origin).status_code == 200


def test_token_from_the_environment(tmp_path: Path) -> None:
    env = clean_env() | {"NOVACONSOLE_SERVE_TOKEN": "from-the-environment-0123"}
    with serve(make_project(tmp_path), env=env) as server:
        assert server.url.endswith("?token=from-the-environment-0123")
        assert get(server.url).status_code == 200


def test_a_random_token_by_default(tmp_path: Path) -> None:
    with serve(make_project(tmp_path)) as server:
        token = server.url.rsplit("=", 1)[1]
        assert len(token) >= 40
        assert get(server.url).status_code == 200
        assert get(server.origin + "/").status_code == 401


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--host", "0.0.0.0"], "--public-url"),
        (["--token", "short"], "at least 16 characters"),
        (["--public-url", "ftp://x"], "http(s) URL"),
    ],
)
def test_usage_errors_are_one_line_and_status_2(tmp_path: Path, args: list[str], says: str) -> None:
    project = make_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "novaconsole", "serve", *args],
        cwd=project.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_port_in_use_is_one_line_and_status_2(served: Served, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "novaconsole", "serve", "--port", str(served.port)],
        cwd=project.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{served.port}" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
