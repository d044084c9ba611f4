"""`datenraum demo --once` end to end, on small sites: the real `datenraum hub` and `site serve` commands."""

from __future__ import annotations

from datenraum.devtools import demo
from datenraum.devtools.ports import free_port

SMALL_SITES = (
    demo.DemoSite("nord", "Klinikum Nord", 300, 1, 0),
    demo.DemoSite("sued", "Klinikum Süd", 200, 2, 1),
    demo.DemoSite("west", "Klinikum West", 200, 3, 2),
)


def test_the_demo_asks_every_site_through_the_hub_and_says_how_to_go_on(tmp_path):
    lines: list[str] = []
    result = demo.run(tmp_path, port=free_port(), once=True, sites=SMALL_SITES, say=lines.append)

    assert {answer["site"]: answer["state"] for answer in result["sites"]} == {
        "nord": "answered",
        "sued": "answered",
        "west": "answered",
    }
    output = "\n".join(lines)
    for site in SMALL_SITES:
        assert f"  {site.name} " in output
    assert "  all 3 sites " in output
    assert 'curl -s -H "Authorization: Bearer $(cat ' in output
    assert "Open the research portal in a browser: http://127.0.0.1:" in output
    assert f"{demo.DEMO_USER} / {demo.DEMO_PASSWORDS[demo.DEMO_USER]}" in output
    assert (tmp_path / "federation" / "query.json").exists()


def test_the_demo_reuses_stores_that_hold_their_recipe(tmp_path):
    site = (demo.DemoSite("tiny", "Tiny", 20, 5, 0),)
    first: list[str] = []
    demo.prepare_sites(tmp_path, site, say=first.append)
    again: list[str] = []
    demo.prepare_sites(tmp_path, site, say=again.append)
    assert first and not again
