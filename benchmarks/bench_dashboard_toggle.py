"""How long a click on a head takes to reach the dashboard's metrics panel, in a real browser.

Starts `streamlit run dashboard/app.py` on localhost (demo model, Banking77, the default
500-example subset), opens the Heads page in headless Chromium (Debian's, offline), clicks one head
in each layer and times click -> first new numbers in the live metrics panel (an estimate on 100
examples when the exact figure is not cached), click -> exact figure (the caption says "exact"), then
click -> page idle (the latency measurement that follows the metrics included). Medians are not taken: every click is
one measured what-if, printed as it happens.

It drives the browser through the test suite's helpers (`tests.browser`), so run it as a module
from the repository root, not as a script:

    python -m benchmarks.bench_dashboard_toggle --out benchmarks/results/dashboard_toggle_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from analysis.measure.record import write_json
from tests.browser import offline_page, streamlit_app, wait_for_streamlit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PANEL = ".st-key-metrics_panel"
CAPTION = PANEL + " [data-testid='stCaptionContainer']"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    p.add_argument("--clicks", default="5:0,4:0,3:0,2:0,1:0,0:0,0:1,5:1")
    args = p.parse_args(argv)
    clicks = [tuple(int(x) for x in c.split(":")) for c in args.clicks.split(",")]
    rows = []
    with streamlit_app(os.path.join(ROOT, "dashboard", "app.py"), timeout_s=120, cwd=ROOT) as server:
        with offline_page(1400, 1000) as browser:
            page = browser.page
            page.goto(server.url + "heads")
            wait_for_streamlit(page, 300_000)
            page.wait_for_selector(CAPTION, timeout=300_000)
            for layer, head in clicks:
                before = page.locator(CAPTION).first.inner_text()
                t0 = time.perf_counter()
                page.locator(f".st-key-head_grid_L{layer} button").nth(head).click()
                page.wait_for_function(
                    "([sel, old]) => { const e = document.querySelector(sel); return e && e.innerText !== old; }",
                    arg=[CAPTION, before], timeout=120_000)
                metrics_s = time.perf_counter() - t0  # the first figure: the estimate, or the exact one if cached/small
                first = page.locator(PANEL + " [data-testid='stMetricValue']").first.inner_text()
                page.wait_for_function(
                    "(sel) => { const e = document.querySelector(sel); return e && e.innerText.includes('exact after'); }",
                    arg=CAPTION, timeout=120_000)
                exact_s = time.perf_counter() - t0
                wait_for_streamlit(page, 120_000)
                idle_s = time.perf_counter() - t0
                value = page.locator(PANEL + " [data-testid='stMetricValue']").first.inner_text()
                rows.append({"layer": layer, "head": head, "to_new_metrics_s": metrics_s, "to_exact_s": exact_s,
                             "to_idle_s": idle_s, "first_shown": first, "accuracy_shown": value})
                print(f"L{layer} H{head}: first figure after {metrics_s:.2f} s ({first}), exact after {exact_s:.2f} s "
                      f"({value}), page idle after {idle_s:.2f} s", flush=True)
            blocked = list(browser.blocked)
    result = {
        "clicks": rows,
        "median_to_new_metrics_s": statistics.median(r["to_new_metrics_s"] for r in rows),
        "max_to_new_metrics_s": max(r["to_new_metrics_s"] for r in rows),
        "median_to_exact_s": statistics.median(r["to_exact_s"] for r in rows),
        "max_to_exact_s": max(r["to_exact_s"] for r in rows),
        "load_average_after": os.getloadavg(),
        "requests_blocked_non_local": blocked,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "clicks"}, indent=1))
    if args.out:
        write_json(args.out, result)  # the machine facts: the server ran on this CPU, under this load


if __name__ == "__main__":
    main()
