"""The offline page `dvc plots show` fills (.dvc/plots/page.html)."""

from ift.plots_page import PAGE_FILE, page_html
from tests.helpers import EXTERNAL_LOAD, ROOT


def test_committed_page_is_what_the_installed_vl_convert_bundles():
    assert (ROOT / PAGE_FILE).read_text(encoding="utf-8") == page_html(), "run `python -m ift.plots_page`"


def test_page_loads_nothing_from_the_network_and_has_dvcs_placeholders():
    page = (ROOT / PAGE_FILE).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # {scripts} would bring DVC's CDN tags back
    assert not EXTERNAL_LOAD.search(page)
    assert "cdn." not in page


def test_the_external_load_check_can_fail():
    assert EXTERNAL_LOAD.search('<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>')
    assert EXTERNAL_LOAD.search("<link href='//fonts.example/x.css'>")
