"""Regenerate docs/heatmap_demo.png from the demo's heatmap (headless Chromium, network off).

    .venv/bin/python docs/screenshot.py results/demo/small_cnn/seed_0/plots/heatmap_intensity.html docs/heatmap_demo.png 12 2
(the last two: batch and epoch of the cell to hover in the first phase panel)
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import Browser  # noqa: E402

src, out, column, row = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
with Browser(width=1200, height=1000) as br:
    br.open(src)
    print("\n".join(br.hover(column, row, "xy")))
    time.sleep(0.2)
    br.screenshot(out)
