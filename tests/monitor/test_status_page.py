"""The gateway's status page shows the imdb example's DAG with live figures in a real browser.

Aspects, with headless Chromium (Debian's ``chromium``) on loopback:
- after requests, every op of the imdb example shows numbers in its box and its table row,
  filled in by the page's script from ``/status.json``: each op its own p50 and p99, as
  ``/status.json`` has them for that op;
- the page draws every op and edge of the DAG;
- a screenshot of it is a PNG of the window's size.
"""

from __future__ import annotations

import asyncio
import html.parser
import shutil
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeserve import ResponseOp

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import ImdbExample

OPS = ("bow", "cnn", "combine")
REQUESTS = 24
WINDOW = (1000, 700)


@pytest.fixture
def imdb(imdb_example: ImdbExample) -> Any:
    """The example's ops module, imported from the example's folder."""
    return imdb_example.ops


class Texts(html.parser.HTMLParser):
    """Text of every element with an id, and the data-from/data-to of every edge."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.edges: set[tuple[str, str]] = set()
        self.nodes: set[str] = set()
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-from" in found:
            self.edges.add((str(found["data-from"]), str(found["data-to"])))
        if "data-node" in found:
            self.nodes.add(str(found["data-node"]))
        if found.get("id"):
            self.by_id[str(found["id"])] = ""
        self._open.append(found.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element is not None:
                self.by_id[element] += data


async def chromium(*args: str, profile: Path) -> str:
    """Run headless Chromium to completion; its stdout."""
    binary = shutil.which("chromium")
    assert binary is not None, "chromium is missing: `make test` installs Debian's chromium package"
    proc = await asyncio.create_subprocess_exec(
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=4000", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


async def test_the_status_page_shows_every_imdb_op_with_live_numbers(imdb: Any, serve: Any, tmp_path: Path) -> None:
    read = imdb.ImdbRequestOp()
    bow = imdb.BowOp(name="bow", input_ops=[read])
    cnn = imdb.CnnOp(name="cnn", input_ops=[read])
    combine = imdb.CombineOp(name="combine", input_ops=[bow, cnn])
    config = {
        "metrics": True,
        "op": {
            "bow": {"batch_size": 8, "auto_batching_timeout": 2},
            "cnn": {"batch_size": 8, "auto_batching_timeout": 2},
            "combine": {"inline": True},
        },
    }
    running = await serve(ResponseOp(input_ops=[combine]), config, name="imdb")
    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["words"], "value": [f"a great film {i}"]}) for i in range(REQUESTS))
        )
    assert all(reply.json()["err_no"] == 0 for reply in replies)

    dom = await chromium("--dump-dom", f"{running.http_url}/", profile=tmp_path / "profile")
    async with running.http() as http:
        status = (await http.get("/status.json")).json()  # no request since: the same figures
    page = Texts()
    page.feed(dom)
    assert page.by_id["state"].startswith(f"requests {REQUESTS}, "), page.by_id["state"]
    for op in OPS:
        row = {name: page.by_id[f"row-{op}-{name}"] for name in ("qps", "p50", "p99", "queue", "errors")}
        in_box = {name: page.by_id[f"fig-{op}-{name}"] for name in ("qps", "p50", "p99", "queue", "errors")}
        assert row == in_box, op
        assert float(row["qps"]) > 0, (op, row)
        assert 0 < float(row["p50"].removesuffix(" ms")) <= float(row["p99"].removesuffix(" ms")), (op, row)
        assert row["queue"] == "0" and row["errors"] == "0", (op, row)
        figures = status["ops"][op]
        assert figures["count"] == REQUESTS, (op, figures)
        shown_ms = (float(row["p50"].removesuffix(" ms")), float(row["p99"].removesuffix(" ms")))
        assert shown_ms == (figures["p50_ms"], figures["p99_ms"]), (op, row, figures)
    shown = {op: (page.by_id[f"row-{op}-p50"], page.by_id[f"row-{op}-p99"]) for op in OPS}
    assert len(set(shown.values())) > 1, f"every op shows the same figures: {shown}"
    assert page.nodes == {"@request", *OPS, "@response"}
    assert page.edges == {
        ("@request", "bow"), ("@request", "cnn"), ("bow", "combine"), ("cnn", "combine"), ("combine", "@response"),
    }  # fmt: skip

    shot = tmp_path / "status.png"
    await chromium(
        f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"{running.http_url}/",
        profile=tmp_path / "profile",
    )  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == WINDOW
    assert len(data) > 10_000  # the drawing, not a blank page
