"""The HTML page `dvc plots show` fills, with vega inlined so that the plots render offline.

DVC's own page loads vega, vega-lite and vega-embed from a CDN (blank with no network).
.dvc/config points `plots.html_template` at PAGE_FILE instead, which holds those libraries
as vl-convert-python bundles them. Regenerate it after upgrading vl-convert-python:

    python -m ift.plots_page
"""

from __future__ import annotations

import sys
from pathlib import Path

PAGE_FILE = Path(".dvc/plots/page.html")
# DVC's plot templates are Vega-Lite v5 specs.
VEGA_LITE_VERSION = "5.21"
# DVC fills {plot_divs} (and {refresh_tag} for --open --refresh); {scripts} is left out, since
# it would bring DVC's CDN <script> tags back.
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots</title>
    <!-- vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}, bundled by vl-convert-python
         (python -m ift.plots_page): no network needed -->
    <script type="text/javascript">
@BUNDLE@
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def page_html() -> str:
    """The page, with the vega libraries of the installed vl-convert-python inlined."""
    import vl_convert

    versions = {"{vega}": vl_convert.get_vega_version(), "{vega_lite}": VEGA_LITE_VERSION,
                "{vega_embed}": vl_convert.get_vega_embed_version()}
    page = PAGE
    for placeholder, version in versions.items():
        page = page.replace(placeholder, version)
    # The default bundle sets window.vegaEmbed, the function DVC's plot <div>s call.
    return page.replace("@BUNDLE@", vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION))


def main() -> None:
    PAGE_FILE.parent.mkdir(parents=True, exist_ok=True)
    PAGE_FILE.write_text(page_html(), encoding="utf-8")
    print(f"wrote {PAGE_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
