"""Regenerate docs/screenshots/*.png: crash-stats over a fresh demo database, in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``; nothing is downloaded).

    .venv/bin/python docs/screenshots.py [--crashes N]

The database is the tests' site data (:mod:`crashdb.test.util.sitedata`): the demo's made-up
crashes over three weeks ending now, processed and rolled up, in a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import urllib.parse

from crashdb.test.util.webserver import Site, newBrowser

OUT = pathlib.Path(__file__).parent / "screenshots"
WIDTH = 1280
TALLEST = 2400


def pages(site: Site) -> dict[str, str]:
    """Screenshot name → path on the server."""
    report = site.uuids[len(site.uuids) // 2]
    top = site.server.json("/api/topcrashers/Firefox")["crashers"][0]["signature"]
    signature = urllib.parse.urlencode({"signature": top, "product": "Firefox", "days": 14})
    return {
        "products": "/",
        "topcrashers": "/topcrashers/Firefox",
        "signature": f"/signature?{signature}",
        "report": f"/report/{report}",
        "search": "/search?product=Firefox&facet=signature,os_name,uptime,addon",
        "explosive": "/explosive/Firefox",
        "crashrates": "/crashrates/Firefox",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=3000)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        site = Site(pathlib.Path(directory), crashes=args.crashes)
        browser = newBrowser()
        try:
            for name, path in pages(site).items():
                browser.set_window_size(WIDTH, 900)
                browser.get(site.server.base + path)
                height = browser.execute_script("return document.documentElement.scrollHeight")
                browser.set_window_size(WIDTH, min(int(height), TALLEST))
                target = OUT / f"{name}.png"
                browser.save_screenshot(str(target))
                print(f"{target} ({path})")
        finally:
            browser.quit()
            errors = site.server.stop()
    if "Traceback" in errors:
        print(errors, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
