"""What TensorBoard's first screen shows, checked in a real browser (headless Chromium, TensorBoard 2.21).

A tiny run with the quickstart's callbacks is served by TensorBoard; the test reads the page as a researcher
sees it on opening: HPARAMS (table and parallel coordinates) opens with the FFN variant, lr, size, seed and
tokens and the validation loss; TIME SERIES opens on `train/loss` and `val/loss` (the `train` group: loss and
learning rate, then `val`), learning rate, gradient norm and throughput (`vitals`) and the gate cards after them.  Without Chromium (Debian: `apt-get install chromium`; `.ci/run` installs it)
the test is skipped and says so.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lit_ffn.cli import main
from tests.callbacks.browser import CHROMIUM, DEEP, Page
from tests.conftest import tiny_fit_args

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
)

HPARAMS_PANE = (
    "(() => {" + DEEP + " const boxes = all.filter(e => e.tagName === 'PAPER-CHECKBOX')"
    ".map(e => [e.textContent.trim(), e.checked]);"
    " const heads = all.filter(e => e.tagName === 'VAADIN-GRID-CELL-CONTENT').map(e => e.textContent.trim());"
    " const axes = all.filter(e => e.tagName === 'TF-HPARAMS-PARALLEL-COORDS-PLOT')"
    ".flatMap(p => [...p.shadowRoot.querySelectorAll('text.axis-title')].map(t => t.textContent.trim()));"
    " return heads.includes('DynamicGEGLU/seed_0') && axes.length ? JSON.stringify({boxes, heads, axes}) : null; })()"
)
TIME_SERIES = (  # group names, and the titles of the cards rendered (Angular renders cards near the viewport)
    "(() => {" + DEEP + " const groups = [...document.querySelectorAll('.group-title')].map(e => e.textContent.trim());"
    " const titles = all.filter(e => e.classList && e.classList.contains('first-text-part'))"
    ".map(e => e.parentElement.textContent.trim());"
    " return groups.length >= 4 && titles.length >= 4 ? JSON.stringify({groups, titles}) : null; })()"
)
SCALARS = (  # the SCALARS dashboard's rendered cards (Polymer: tf-scalar-card, in shadow DOM), in page order
    "(() => {" + DEEP + " const cards = all.filter(e => e.tagName === 'TF-SCALAR-CARD').map(e => e.tag);"
    " return cards.length >= 4 ? JSON.stringify(cards) : null; })()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Iterator[str]:
    """The URL of a TensorBoard serving one tiny DynamicGEGLU run with the quickstart's callbacks."""
    root = tmp_path_factory.mktemp("browser")
    args = ["fit", "--config", "configs/quickstart.yaml", *tiny_fit_args(tiny_dataset, root, steps=6)[1:],
            "--data.quickstart=false", "--config", "configs/ffn/dynamic_geglu.yaml"]  # fmt: skip
    assert main(args) == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(root / "runs" / "tiny"), "--port", str(port),
         "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/data/environment", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("TensorBoard did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        server.kill()
        server.wait()


def test_hparams_opens_on_the_ffn_lr_seed_and_the_validation_loss(tensorboard: str) -> None:
    with Page(f"{tensorboard}/#hparams") as page:
        shown = page.evaluate(HPARAMS_PANE)
    assert shown is not None, "the HPARAMS dashboard did not render its table"
    checked = [name for name, on in shown["boxes"] if on]
    assert checked[:5] == ["ffn", "lr", "num_parameters", "seed", "tokens"]  # hyperparameters shown
    assert {"val/loss", "val/ppl", "train/loss"} <= set(checked)  # metrics shown
    assert "accumulate_grad_batches" not in checked and "commit" not in checked
    start = shown["heads"].index("Trial ID")  # the header row, then the cells of the rows
    assert shown["heads"][start : start + 10] == [
        "Trial ID",
        "Show Metrics",
        "ffn",
        "lr",
        "num_parameters",
        "seed",
        "tokens",
        "val/loss",
        "val/ppl",
        "train/loss",
    ]
    assert "DynamicGEGLU" in shown["heads"][start + 10 :]  # the run's row: its ffn cell
    assert shown["axes"][:5] == ["ffn", "lr", "num_parameters", "seed", "tokens"]  # parallel coordinates
    assert "val/loss" in shown["axes"]


def rendered_card_titles(url: str) -> list[str]:
    """The titles of TIME SERIES' cards in the page's DOM order, as Chromium renders the page (``--dump-dom``):
    the ``title="…"`` of each ``class="tag"`` element (Angular, no shadow DOM; cards near the viewport)."""
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000",
         "--virtual-time-budget=20000", "--dump-dom", f"{url}/#timeseries"],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout  # fmt: skip
    tags = re.findall(r"<[^>]*\bclass=\"tag\"[^>]*>", dom)
    return [match.group(1) for tag in tags if (match := re.search(r'\btitle="([^"]*)"', tag))]


def test_time_series_opens_on_the_train_and_validation_loss(tensorboard: str) -> None:
    titles = rendered_card_titles(tensorboard)
    assert titles[:3] == ["train/loss", "val/loss", "val/ppl"], titles  # the `train` group is the loss alone
    groups = [title.split("/")[0] for title in titles]
    assert groups == sorted(groups, key=["train", "val", "vitals", "z_gates"].index), titles  # lr, speed: later
    assert not [title for title in titles if "available_flops" in title]  # no card holding one constant point
    with Page(f"{tensorboard}/#timeseries") as page:
        shown = page.evaluate(TIME_SERIES)
    assert shown is not None, "the TIME SERIES dashboard did not render its groups"
    assert [name for name in shown["groups"] if name != "Pinned"] == ["train", "val", "vitals", "z_gates"]


def test_scalars_opens_on_the_train_and_validation_loss(tensorboard: str) -> None:
    with Page(f"{tensorboard}/#scalars") as page:
        cards = page.evaluate(SCALARS)
    assert cards is not None, "the SCALARS dashboard did not render its cards"
    assert cards[:4] == ["train/loss", "val/loss", "val/ppl", "val/unigram_reference"]
    assert not [tag for tag in cards if "available_flops" in tag]  # no card holding one constant point
    gates = [i for i, tag in enumerate(cards) if tag.startswith("z_gates/")]
    assert not gates or min(gates) > cards.index("val/loss")
