"""Size, height and images of a built report, as docs/performance.md records them.

Headless Chromium (Debian's, through Selenium) at 1400x1000 opens results/report/index.html
and reads the page height, where the overview ends and every image's natural width (0 = a
figure without data); file sizes come from the disk.

    .venv/bin/python tools/report_metrics.py [CHECKOUT]
"""

import json
import pathlib
import sys

from forgebench.service.headless_chromium import chromium

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
rep = root / "results/report"
with chromium(width=1400, height=1000) as d:
    d.get((rep / "index.html").resolve().as_uri())
    h = d.execute_script("return document.documentElement.scrollHeight;")
    imgs = d.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth]);"
    )
    ov = d.execute_script(
        "const s = document.querySelector('#overview, section.overview, [id^=overview]');"
        "return s ? s.getBoundingClientRect().bottom + window.scrollY : null;"
    )
size = sum(f.stat().st_size for f in rep.rglob("*") if f.is_file())
plots = [f for f in (rep / "plots").rglob("*") if f.is_file()] if (rep / "plots").exists() else []
print(
    json.dumps(
        {
            "page_height_px": h,
            "overview_bottom_px": ov,
            "images_on_page": len(imgs),
            "images_without_data": [s for s, w in imgs if not w],
            "report_total_mb": round(size / 1e6, 2),
            "plots_files": len(plots),
            "plots_mb": round(sum(f.stat().st_size for f in plots) / 1e6, 2),
            "summary_md_chars": len((rep / "summary.md").read_text()),
            "summary_json_kb": round((rep / "summary.json").stat().st_size / 1e3, 1),
        },
        indent=1,
    )
)
