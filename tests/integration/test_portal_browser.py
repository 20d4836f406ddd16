"""The tenant portal in a real Chromium (Debian's, driven by Playwright) on a real stack: Kafka,
the registry, the gateway with the portal, a router and a delivery worker (``LocalStack``, as
``cpevents dev up`` runs them), and a local receiver.

One test walks what a tenant does: open a link, create an endpoint and copy its secret, send a
test event and verify its signature with that secret, watch a failing endpoint's attempts and
dead letter appear live, fix the endpoint and redrive, replay a range. Along the way it checks
what must never happen: another tenant's data shown, an expired or tampered link working, a
payload's ``<script>`` running, a form accepted without its CSRF token.

Screenshots of each page at 1280 and 390 px go to ``$PORTAL_SCREENSHOTS`` (the README's
come from ``PORTAL_SCREENSHOTS=docs/portal``), else to the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from standardwebhooks.webhooks import Webhook as StandardWebhook

from cpevents.cli.dev import platform_services
from cpevents.stack import LocalStack, StackPorts, throwaway_environment
from tests.conftest import make_settings
from tests.fixtures_delivery import Receiver, eventually

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN = "tok-portal-admin"
TOKENS = {"tok-portal-a": "ten_a", "tok-portal-b": "ten_b"}
XSS = "<script>alert('xss')</script>"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")


@pytest.fixture
async def stack(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[LocalStack]:
    run = uuid.uuid4().hex[:8]
    # Short retry tiers: a failing endpoint reaches the dead-letter topic within seconds.
    settings = make_settings(
        kafka_bootstrap, retry_tiers=("1s", "2s"), registry_topic=f"_schemas_portal{run}"
    )
    env = {
        **throwaway_environment(ADMIN),
        "CPEVENTS_TENANT_TOKENS": json.dumps(TOKENS),
        "CPEVENTS_PORTAL_KEY": uuid.uuid4().hex,
    }
    local = LocalStack(settings, platform_services, StackPorts.free(), tmp_path / "logs", env)
    await asyncio.to_thread(local.start)
    try:
        yield local
    finally:
        await asyncio.to_thread(local.stop)


class Api:
    """The gateway's JSON API, for what the test sets up or checks around the browser."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(
            method, self.base + path, json=body, headers=headers
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def link(self, token: str, tenant: str | None, expires_in: int = 600) -> str:
        body: dict[str, Any] = {"expires_in": expires_in}
        if tenant is not None:
            body["tenant_id"] = tenant
        url: str = (await self.call("POST", "/v1/portal-links", token, body))["url"]
        return url

    async def deliveries(self, token: str, **query: str) -> list[dict[str, Any]]:
        path = "/v1/deliveries?" + "&".join(f"{k}={v}" for k, v in query.items())
        found: list[dict[str, Any]] = (await self.call("GET", path, token))["deliveries"]
        return found


class Shots:
    """Screenshots of each page at 1280 and 390 px wide."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def take(self, page: Page, name: str) -> None:
        for width, height in ((1280, 800), (390, 844)):
            await page.set_viewport_size({"width": width, "height": height})
            await page.wait_for_timeout(150)
            await page.screenshot(path=str(self.directory / f"{name}-{width}.png"))
        await page.set_viewport_size({"width": 1280, "height": 800})


async def _new_context(browser: Browser, origin: str) -> BrowserContext:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    return context


async def _create_endpoint(page: Page, base: str, url: str, events: list[str]) -> tuple[str, str]:
    """Create an endpoint through the form; its id and the secret copied with the button."""
    await page.goto(f"{base}/portal/endpoints")
    await page.click("text=Add endpoint")
    await page.fill("input[name=url]", url)
    for pattern in events:
        await page.check(f"input[name=events][value='{pattern}']")
    await page.click("button:has-text('Create endpoint')")
    shown = (await page.inner_text("#secret")).strip()
    await page.click("button[data-copy]")
    await page.wait_for_selector("button[data-copy].copied")
    copied: str = await page.evaluate("navigator.clipboard.readText()")
    assert copied == shown and copied.startswith("whsec_")
    hook_id = await page.get_attribute("[data-endpoint]", "data-endpoint")
    assert hook_id is not None
    return hook_id, copied


def _verified(receiver: Receiver, path: str, secret: str) -> list[dict[str, Any]]:
    return [StandardWebhook(secret).verify(r.body, r.headers) for r in receiver.at(path)]


async def test_a_tenant_manages_endpoints_deliveries_and_dead_letters_in_chromium(  # noqa: PLR0915
    stack: LocalStack, receiver: Receiver, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{stack.ports.gateway}"
    shots = Shots(Path(os.environ.get("PORTAL_SCREENSHOTS") or tmp_path / "shots"))
    dialogs: list[str] = []
    started = time.time()
    receiver.script("/fail", default=500)
    async with aiohttp.ClientSession() as http, async_playwright() as playwright:
        api = Api(http, base)
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await _new_context(browser, base)
        page = await context.new_page()
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))

        # A tenant token's link opens the portal; the token leaves the address bar.
        await page.goto(await api.link("tok-portal-a", "ten_a"))
        await page.wait_for_url(f"{base}/portal/endpoints")
        [cookie] = [c for c in await context.cookies() if c["name"] == "cpe_portal"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        await shots.take(page, "endpoints-empty")

        await page.goto(f"{base}/portal/endpoints/new")
        await shots.take(page, "endpoint-new")
        ok_id, ok_secret = await _create_endpoint(
            page, base, receiver.url("/ok"), ["deploy.*", "instance.created"]
        )
        await shots.take(page, "secret")

        # A test event goes through the delivery worker and arrives signed with the secret.
        await page.goto(f"{base}/portal/endpoints")
        await page.click(f"tr[data-endpoint='{ok_id}'] button:has-text('Send test event')")
        await page.wait_for_url(f"**/portal/deliveries?endpoint={ok_id}*")
        await page.wait_for_selector("tr[data-status=delivered]", timeout=60_000)  # live
        [test_event] = _verified(receiver, "/ok", ok_secret)
        assert test_event["type"] == "instance.created" and test_event["payload"]["test"] is True

        # A failing endpoint: its attempts and its dead letter appear without a reload.
        fail_id, fail_secret = await _create_endpoint(page, base, receiver.url("/fail"), [])
        await page.goto(f"{base}/portal/deliveries")
        await api.call("POST", "/v1/events", "tok-portal-a", {
            "type": "deploy.failed", "tenant_id": "ten_a", "payload": {"note": XSS},
        })  # fmt: skip
        dead_row = page.locator("tr[data-status=dead_lettered]")
        await dead_row.wait_for(timeout=60_000)
        await page.wait_for_selector("tr[data-status=delivered] >> text=deploy.failed")
        await shots.take(page, "deliveries")
        await page.select_option("select[name=status]", "dead_lettered")
        await page.click("button:has-text('Filter')")
        await page.wait_for_url("**status=dead_lettered*")
        assert await page.locator("tr[data-status=delivered]").count() == 0
        dead_id = await dead_row.first.get_attribute("data-delivery")
        await page.goto(f"{base}/portal/deliveries/{dead_id}")
        await page.wait_for_selector(".timeline .tl-item:nth-child(3)")  # three attempts
        timeline = await page.inner_text("#timeline")
        assert timeline.count("HTTP 500: receiver says hi") == 3, timeline
        assert XSS in await page.inner_text("#payload")  # shown as text, never run
        await shots.take(page, "delivery")

        await page.click("text=Dead letters")
        row = page.locator(f"tr[data-dead='{dead_id}']")
        await row.wait_for()
        assert "500" in await row.locator(".reason").inner_text()
        await shots.take(page, "dead-letters")

        # Fix the endpoint (a new URL), then redrive everything of it: delivered, signed.
        await page.goto(f"{base}/portal/endpoints/{fail_id}")
        await shots.take(page, "endpoint-edit")
        await page.fill("input[name=url]", receiver.url("/fixed"))
        await page.click("button:has-text('Save changes')")
        await page.wait_for_selector("text=Endpoint saved.")
        await page.goto(f"{base}/portal/dead-letters")
        await page.select_option("select[name=endpoint]", fail_id)
        await page.click("button:has-text('Redrive all for endpoint')")
        await page.wait_for_selector("text=1 dead letters sent back")
        await eventually(lambda: bool(receiver.at("/fixed")), within=60, what="the redrive")
        [redriven] = _verified(receiver, "/fixed", fail_secret)
        assert redriven["payload"] == {"note": XSS}
        await page.goto(f"{base}/portal/deliveries/{dead_id}")
        await page.wait_for_selector(".badge-delivered", timeout=30_000)

        # Replay: a count and a confirmation first, then the events arrive again.
        await page.goto(f"{base}/portal/endpoints/{ok_id}/replay")
        since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60))
        await page.fill("input[name=since]", since)
        await page.click("button:has-text('Count events')")
        await page.wait_for_selector("button:has-text('Send 1 event')")  # deploy.failed only
        await shots.take(page, "replay")
        before = len(receiver.at("/ok"))
        await page.click("button:has-text('Send 1 event')")
        await eventually(lambda: len(receiver.at("/ok")) > before, within=60, what="the replay")
        replayed = _verified(receiver, "/ok", ok_secret)[-1]
        assert replayed["type"] == "deploy.failed"

        # A form post without (or with a wrong) CSRF token is refused, and changes nothing.
        forms: list[dict[str, str | float | bool]] = [{}, {"csrf": "forged"}]
        for form in forms:
            refused = await page.request.post(f"{base}/portal/endpoints/{ok_id}/toggle", form=form)
            assert refused.status == 403
        assert (await api.call("GET", f"/v1/webhooks/{ok_id}", ADMIN))["active"] is True

        # Another tenant's ids answer 404 in pages, and nothing of theirs shows.
        other = await api.call("POST", "/v1/webhooks", "tok-portal-b", {
            "url": receiver.url("/b-secret-endpoint"), "events": ["deploy.*"],
        })  # fmt: skip
        await api.call("POST", "/v1/events", "tok-portal-b", {
            "type": "deploy.started", "tenant_id": "ten_b", "payload": {"who": "tenant-b-data"},
        })  # fmt: skip
        await eventually(
            lambda: bool(receiver.at("/b-secret-endpoint")), within=60, what="tenant b delivery"
        )
        b_deliveries: list[dict[str, Any]] = []

        async def tenant_b_recorded() -> bool:
            b_deliveries[:] = await api.deliveries("tok-portal-b")
            return bool(b_deliveries)

        await eventually(tenant_b_recorded, within=30, what="tenant b's attempt record")
        b_delivery = b_deliveries[0]
        for path in (f"/portal/endpoints/{other['id']}", f"/portal/deliveries/{b_delivery['id']}"):
            shown = await page.goto(base + path)
            assert shown is not None and shown.status == 404
            assert "b-secret-endpoint" not in await page.content()
        for path in ("/portal/endpoints", "/portal/deliveries", "/portal/dead-letters"):
            await page.goto(base + path)
            html = await page.content()
            assert "b-secret-endpoint" not in html and b_delivery["id"] not in html

        # The operator sees every tenant, with a picker.
        await page.goto(await api.link(ADMIN, None))
        await page.wait_for_url(f"{base}/portal/endpoints")
        assert "b-secret-endpoint" in await page.content()
        async with page.expect_navigation():
            await page.select_option("#tenant-picker", "ten_a")
        assert "b-secret-endpoint" not in await page.content()
        async with page.expect_navigation():
            await page.select_option("#tenant-picker", "")
        await shots.take(page, "operator")

        # An expired link and a tampered one show the expired page and nothing else.
        fresh = await _new_context(browser, base)
        stranger = await fresh.new_page()
        stranger.on("dialog", lambda dialog: dialogs.append(dialog.message))
        short = await api.link("tok-portal-a", "ten_a", expires_in=1)
        tampered = (await api.link("tok-portal-a", "ten_a"))[:-3] + "AAA"
        await asyncio.sleep(1.5)
        for url in (short, tampered, f"{base}/portal/endpoints"):
            shown = await stranger.goto(url)
            assert shown is not None and shown.status == 401
            html = await stranger.content()
            assert "expired" in html and ok_id not in html and "/ok" not in html
        await shots.take(stranger, "expired")

        await browser.close()
    assert dialogs == []  # no alert(): the payload's script never ran
