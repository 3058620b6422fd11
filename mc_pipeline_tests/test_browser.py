"""The Dagster UI and the usage API in a real browser: headless Debian chromium driven by Playwright.

Against the real ``dagster-webserver`` + ``dagster-daemon`` + ``python -m mc_pipeline serve`` (``make dev``;
:mod:`mc_pipeline_tests.live_stack`), on a home with calls today and the two days before, after a completed
``refresh_all`` run:

- the asset graph page shows every asset group, and with the groups expanded the assets in them;
- the ``llm_calls`` Partitions tab counts the days with calls as materialized, lists exactly those days, and
  today's partition shows its materialisation with today's number of calls;
- the latest materialisation of ``usage_by_provider`` renders its ``daily_cost_by_provider`` chart (an SVG
  data-URI ``<img>`` that the browser decoded: naturalWidth > 0);
- the schedule and the three sensors show as running on the Automation page;
- ``/api/usage/today`` opened in the browser equals ``usage_daily``'s rows for today.

Screenshots of the graph, the partitions and the chart go to ``$MC_SCREENSHOTS_DIR`` when it is set (the ones
in ``docs/screenshots/`` were made with ``MC_SCREENSHOTS_DIR=docs/screenshots``), else to the test's temporary
folder, so a test run never rewrites tracked files. Needs ``/usr/bin/chromium`` (Debian's ``chromium``:
``.ci/run`` installs it when it runs as root) and the ``playwright`` package (the ``test`` extra); skipped
without either. Playwright never downloads a browser here: it drives the system one.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mc_pipeline.tables.store import Tables
from mc_pipeline_tests.live_stack import LiveStack, local_today, plant_home, reporting_zone
from mc_pipeline_tests.test_webserver import ASSETS_QUERY, LOCATION, REPO_QUERY, graphql, launch

CHROMIUM = Path(os.environ.get("MC_TEST_CHROMIUM") or "/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"no browser at {CHROMIUM}: install Debian's chromium "
        "(apt-get install chromium; .ci/run does as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
)

pytestmark = pytest.mark.slow
sync_api.expect.set_options(timeout=30_000)

ROOT = Path(__file__).resolve().parents[1]
UI_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1280, "height": 800}
CHROME_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Dagster's first-visit "Join the Dagster community" dialog remembers its dismissal here.
NO_COMMUNITY_DIALOG = "localStorage.setItem('communityNux', JSON.stringify('1'));"
GROUPS = {"sources", "ingest", "marts", "alerts", "dashboard"}
AUTOMATIONS = {"hourly_refresh", "transcript_changes", "alert_delivery", "run_failure_alerts"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    now = datetime.now(UTC)
    tz = reporting_zone(now)
    planted = plant_home(tmp / "home", now)
    with LiveStack(tmp, tmp / "home", tz) as s:
        s.wait_ready()
        # a completed refresh_all run, launched as the UI does (the sensor's own first run queues behind it)
        repos = graphql(s.port, REPO_QUERY)["repositoriesOrError"]["nodes"]
        repo_name = next(r["name"] for r in repos if r["location"]["name"] == LOCATION)
        launch(s.port, repo_name, {}, "browser-test")
        s.wait_refreshed()
        s.planted = planted
        yield s


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("MC_SCREENSHOTS_DIR")
    if not chosen:
        return tmp_path_factory.mktemp("shots")
    folder = Path(chosen) if Path(chosen).is_absolute() else ROOT / chosen
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page (own storage) with the community dialog dismissed; uncaught page errors in
    ``page.errors``."""
    context = chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(NO_COMMUNITY_DIALOG + "localStorage.setItem('dagster-nav-collapsed', 'true');")
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    # should another first-visit dialog or a later Dagster show one anyway: skip it before acting
    pg.add_locator_handler(
        pg.get_by_role("dialog").get_by_role("button", name="Skip", exact=True), lambda loc: loc.click()
    )
    try:
        yield pg
    finally:
        context.close()


def visible(page, text: str):
    """The visible element whose whole text is ``text`` (Dagster keeps a hidden copy of truncated labels)."""
    return page.get_by_text(text, exact=True).filter(visible=True).first


def test_asset_graph_shows_every_group(stack, page, shots):
    groups = {
        n["groupName"] for n in graphql(stack.port, ASSETS_QUERY)["assetNodes"]
    }  # what the server loaded
    assert groups >= GROUPS, groups  # every one of them is checked on the page below

    page.goto(stack.ui_base + "/asset-groups")
    expect = sync_api.expect
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in sorted(groups):
        expect(visible(page, group), f"asset group {group} not shown").to_be_visible()
    page.get_by_role("button").filter(
        has=page.locator("[aria-label=panel_show_right]")
    ).click()  # the asset tree aside
    page.locator("button:has([aria-label=settings])").last.click()  # the graph's options
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(1500)  # the layout settles
    page.mouse.move(VIEWPORT["width"] // 2 + 30, VIEWPORT["height"] // 2 + 50)
    for _ in range(4):  # zoom out (ctrl + wheel) until most of the graph fits
        page.keyboard.down("Control")
        page.mouse.wheel(0, 100)
        page.keyboard.up("Control")
        page.wait_for_timeout(300)
    # the groups opened: their assets are drawn (the graph draws only what is in view)
    for asset in ("llm_calls", "usage_daily", "usage_by_provider", "budget_alerts", "usage_data_json"):
        expect(visible(page, asset), f"asset {asset} not drawn").to_be_visible()
    for group in sorted(groups):
        expect(visible(page, group), f"asset group {group} not shown expanded").to_be_visible()
    page.wait_for_timeout(500)
    page.screenshot(path=shots / "asset-graph.png")
    assert not page.errors, page.errors


def test_llm_calls_partitions_show_the_days_with_calls(stack, page, shots):
    expect = sync_api.expect
    today = local_today(stack.tz)
    days = [d.isoformat() for d in Tables(stack.data).days("llm_calls")]
    assert days == [(today - timedelta(days=n)).isoformat() for n in (2, 1, 0)], (days, today)

    page.goto(stack.ui_base + "/assets/llm_calls?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(days)})", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).click()  # only the materialized ones are listed
    listed = (
        "() => [...document.querySelectorAll('[title]')].map(e => e.title)"
        ".filter(t => /^\\d{4}-\\d\\d-\\d\\d$/.test(t))"
    )
    try:
        page.wait_for_function(
            f"(want) => JSON.stringify(({listed})()) === JSON.stringify(want)", arg=days[::-1]
        )
    except sync_api.TimeoutError:
        pytest.fail(f"partitions listed {page.evaluate(listed)}, expected {days[::-1]}")

    page.locator(
        f'[title="{today.isoformat()}"]'
    ).click()  # the list entry (the range under the bar ends on today too)
    expect(page.get_by_text("No partition selected")).to_be_hidden()
    detail = page.locator("tr", has_text="dagster/row_count")
    expect(detail).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).filter(visible=True)).to_be_visible()
    calls_today = Tables(stack.data).read_days("llm_calls", [today]).height
    assert calls_today == stack.planted["today_calls"]
    expect(detail.locator("td").nth(1)).to_have_text(str(calls_today))  # the partition's calls
    page.screenshot(path=shots / "llm-calls-partitions.png")
    assert not page.errors, page.errors


LATEST_MATERIALIZATION = """
query Latest($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label } } } } }
"""


def test_usage_by_provider_chart_renders(stack, page, shots):
    expect = sync_api.expect
    asset = graphql(stack.port, LATEST_MATERIALIZATION, {"key": {"path": ["usage_by_provider"]}})[
        "assetOrError"
    ]
    latest = asset["assetMaterializations"][0]
    assert "daily_cost_by_provider" in {m["label"] for m in latest["metadataEntries"]}, latest

    page.goto(stack.ui_base + "/assets/usage_by_provider?view=events")
    expect(
        page.get_by_text(f"Materialized in run {latest['runId'][:8]}")
    ).to_be_visible()  # the latest one is shown
    row = page.locator("tr", has_text="daily_cost_by_provider")
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("daily_cost_by_provider")
    img = dialog.locator("img[src^='data:image/svg+xml']")
    expect(img).to_be_visible()
    assert img.count() == 1
    natural = img.evaluate("i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight, alt: i.alt})")
    assert natural["complete"] and natural["w"] > 0 and natural["h"] > 0, natural
    box = img.bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0, box
    page.wait_for_timeout(300)  # the dialog's opening transition
    page.screenshot(path=shots / "usage-by-provider-chart.png")
    assert not page.errors, page.errors


#: name -> whether the on/off switch in that automation's row is on (None: no row with one switch found). The
#: row is the outermost element holding the name (as a whole label) and exactly one switch.
SWITCHES = """(names) => Object.fromEntries(names.map(name => {
  const switches = "label[class*='formatSwitch'] input[type=checkbox]";
  const row = [...document.querySelectorAll("div")].find(d => d.querySelectorAll(switches).length === 1
    && [...d.querySelectorAll("*")].some(e => e.childElementCount === 0 && e.textContent.trim() === name));
  return [name, row ? row.querySelector(switches).checked : null];
}))"""


def test_schedule_and_sensors_show_as_running(stack, page):
    expect = sync_api.expect
    repo = next(
        r
        for r in graphql(stack.port, REPO_QUERY)["repositoriesOrError"]["nodes"]
        if r["location"]["name"] == LOCATION
    )
    names = {s["name"] for s in repo["schedules"]} | {s["name"] for s in repo["sensors"]}
    assert names >= AUTOMATIONS, names
    names = AUTOMATIONS  # running by default; an automation added later may be off by default
    page.goto(stack.ui_base + "/automation")
    for name in sorted(names):
        expect(visible(page, name)).to_be_visible()
    want = dict.fromkeys(sorted(names), True)
    try:
        page.wait_for_function(
            f"(names) => Object.values(({SWITCHES})(names)).every(on => on === true)", arg=sorted(names)
        )
    except sync_api.TimeoutError:
        pass  # the assertion below says which
    state = page.evaluate(SWITCHES, sorted(names))
    assert state == want, f"running (switch on) per automation: {state}"
    assert not page.errors, page.errors


def test_usage_api_today_in_the_browser_equals_usage_daily(stack, page):
    today = local_today(stack.tz)
    response = page.goto(stack.api_base + "/api/usage/today")
    assert response is not None and response.ok, response and response.status
    doc = response.json()
    sync_api.expect(page.locator("body")).to_contain_text(f'"date":"{today.isoformat()}"')
    usage = Tables(stack.data).staged("usage_daily").filter(pl.col("day") == today)
    assert usage.height > 0, "no usage_daily row for today"
    assert doc["date"] == today.isoformat() and doc["timezone"] == stack.tz, doc
    assert doc["requests"] == usage.get_column("calls").sum() == stack.planted["today_calls"], (doc, usage)
    assert doc["cost"] == pytest.approx(usage.get_column("cost_usd").sum(), abs=1e-9), (doc, usage)
    assert {p["name"] for p in doc["byProvider"]} == set(usage.get_column("provider")), doc
