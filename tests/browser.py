"""A headless Chromium that opens our self-contained plotly pages with no network, for the browser tests.

Debian's packages, never a downloaded browser:  apt-get install -y chromium chromium-driver
The flags are the ones that kept Chromium from reaching any outside host on the build machine
(see the notes on browser tests); the CDP offline switch and the performance log let a test assert
that a page loaded nothing but file: and data: URLs.
"""

import base64
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
OFFLINE_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
]
HOVER_INTERVAL = 0.06  # plotly throttles Fx.hover to one call per 50 ms


def missing():
    """The browser executables that are not installed."""
    return [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]


def decode_typed_array(value):
    """plotly.py 6+ ships numpy arrays as {dtype, bdata, shape}; anything else is returned as an array."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            a = a.reshape([int(s) for s in str(shape).split(",")])
        return a
    if isinstance(value, dict):  # a typed array that came back from JS as {"0": .., "1": ..}
        return np.array([value[k] for k in sorted(value, key=int)], dtype=float)
    if isinstance(value, list):
        return np.array([decode_typed_array(v) if isinstance(v, dict) else v for v in value], dtype=float)
    return np.asarray(value)


class Browser:
    """One headless Chromium, offline; `open` a page, then ask it about the plotly graph in it."""

    def __init__(self, width=1200, height=1000, timeout=20):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="bestbatch-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in OFFLINE_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        # an explicit driver path keeps Selenium Manager (which goes online) out of it
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(timeout)
        self.driver.set_script_timeout(timeout)
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        self.urls = []
        self._last_hover = 0.0
        self.set_size(width, height)

    # --- life cycle --------------------------------------------------------------------------------

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_size(self, width, height):
        """Make the page's viewport (what a screenshot shows) width x height; the window adds its frame."""
        self.driver.set_window_size(width, height)
        inner = self.driver.execute_script("return [window.innerWidth, window.innerHeight];")
        if inner != [width, height]:
            self.driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])

    def open(self, path, plot=True):
        """Load a local file; with `plot`, wait until its plotly graph is drawn."""
        self.requested_urls()  # drain the log so the list covers this page only
        self.urls = []
        self.driver.get(Path(path).resolve().as_uri())
        if plot:
            self._wait(
                'const gd = document.querySelector(".js-plotly-plot");return !!(gd && gd._fullLayout && window.Plotly);'
            )
            # note button clicks and redraws, so a test can wait for a button's update to land
            self.driver.execute_script(
                'const gd = document.querySelector(".js-plotly-plot");'
                "window.__clicked = []; window.__redraws = 0;"
                'gd.on("plotly_buttonclicked", e => window.__clicked.push(e.button.label));'
                'gd.on("plotly_afterplot", () => { window.__redraws += 1; });'
            )
        return self

    def _wait(self, script, *args):
        """Poll a JS expression (the body of a function) until it returns something truthy."""
        end = time.monotonic() + self.timeout
        while True:
            value = self.driver.execute_script(script, *args)
            if value:
                return value
            if time.monotonic() > end:
                raise TimeoutError(f"browser: timed out waiting for: {script}")
            time.sleep(0.02)

    # --- what the page is ----------------------------------------------------------------------------

    def js(self, script, *args):
        """Run JS with `gd` bound to the page's plotly graph."""
        return self.driver.execute_script('const gd = document.querySelector(".js-plotly-plot");' + script, *args)

    def n_traces(self):
        return self.js("return gd.data.length;")

    def trace_names(self):
        return self.js("return gd.data.map(t => t.name);")

    def trace_z(self, i):
        """gd.data[i].z as a float array, whatever form plotly.js holds it in."""
        z = self.js(
            "const z = arguments[0] === undefined ? null : gd.data[arguments[0]].z;"
            "if (z && z.bdata !== undefined) return z;"
            "return Array.from(z, row => Array.from(row));",
            i,
        )
        return decode_typed_array(z).astype(float)

    def console_errors(self):
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def requested_urls(self):
        """Every URL the page asked for since `open` (from the performance log)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self.urls.append(message["params"]["request"]["url"])
        return list(self.urls)

    # --- what a reader does ----------------------------------------------------------------------

    def hover(self, column, row, subplot="xy"):
        """Hover the cell at data coordinates (column, row) of a subplot ('xy', 'x2y2', ...); the label's lines."""
        self.js("Plotly.Fx.unhover(gd);")
        wait = self._last_hover + HOVER_INTERVAL - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.js(
            "Plotly.Fx.hover(gd, {xval: arguments[0], yval: arguments[1]}, arguments[2]);",
            float(column),
            float(row),
            subplot,
        )
        self._last_hover = time.monotonic()
        try:
            return self._wait(
                'const text = document.querySelector(".hoverlayer .hovertext text");'
                "if (!text) return null;"
                'const lines = Array.from(text.querySelectorAll("tspan.line"), t => t.textContent);'
                "return lines.length ? lines : [text.textContent];"
            )
        except TimeoutError:
            return []

    def click_button(self, label):
        """Click the updatemenu button with this label (a real mouse click) and wait for its update."""
        from selenium.webdriver.common.by import By

        for button in self.driver.find_elements(By.CSS_SELECTOR, ".updatemenu-button"):
            if button.find_element(By.CSS_SELECTOR, ".updatemenu-item-text").text.strip() == label:
                break
        else:
            labels = [b.text for b in self.driver.find_elements(By.CSS_SELECTOR, ".updatemenu-button")]
            raise LookupError(f"no button {label!r}; buttons: {labels}")
        redraws = self.driver.execute_script("return window.__redraws;")
        button.click()
        self._wait("return window.__clicked.includes(arguments[0]) && window.__redraws > arguments[1];", label, redraws)

    def screenshot(self, path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"browser: could not write the screenshot {path}")
        return path
