"""A headless Chromium driven over the DevTools protocol, for tests that assert what a page shows.

``--dump-dom`` serializes no shadow roots, and TensorBoard's HPARAMS dashboard is Polymer (everything in
shadow DOM), so the tests evaluate JavaScript in the page instead.  Chromium's ``--remote-debugging-pipe``
speaks the protocol over file descriptors 3 (commands in) and 4 (replies out) as NUL-terminated JSON: no
port, no websocket client library.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

#: Every element of the page, shadow roots included, as ``all``: prepended to the expressions evaluated.
DEEP = (
    "const all = []; const walk = (root) => { for (const el of root.querySelectorAll('*')) "
    "{ all.push(el); if (el.shadowRoot) walk(el.shadowRoot); } }; walk(document);"
)


class Page:
    """One page in a headless Chromium; :meth:`evaluate` polls a JavaScript expression until it is truthy."""

    def __init__(self, url: str, width: int = 1600, height: int = 1000) -> None:
        r_cmd, self._w_cmd = os.pipe()
        self._r_res, w_res = os.pipe()

        def as_fds_3_and_4() -> None:  # in the child, before exec
            os.dup2(r_cmd, 3)
            os.dup2(w_res, 4)

        self._proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=as_fds_3_and_4,  # noqa: PLW1509 - only dup2 (async-signal-safe) runs there
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(r_cmd)
        os.close(w_res)
        self._buffer, self._id = b"", 0
        target = self._call("Target.createTarget", {"url": url})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def _call(self, method: str, params: dict[str, Any], session: str | None = None) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._w_cmd, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            chunk = os.read(self._r_res, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The JSON value of ``expression`` once it is truthy (the page renders asynchronously); None at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, self._session)
            value = result.get("result", {}).get("value")
            if value:
                return json.loads(value) if isinstance(value, str) else value
            time.sleep(0.5)
        return None

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        os.close(self._w_cmd)
        os.close(self._r_res)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
