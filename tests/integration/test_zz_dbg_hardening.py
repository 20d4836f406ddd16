import asyncio
from collections import Counter
from tests.integration.test_delivery_hardening import start_harness, stop_harness, delivery_settings
from tests.integration.test_delivery_hardening import BREAKER, attempt_log, all_final
from tests.fixtures_delivery import receiver as receiver  # noqa


async def test_dbg(kafka_bootstrap, registry_url, receiver):
    settings = delivery_settings(kafka_bootstrap, registry_url, **BREAKER)
    h, stop, worker = await start_harness(settings)
    try:
        seen = set()
        def first_fails(request):
            event = request.headers["webhook-id"]
            if event in seen:
                return 200
            seen.add(event)
            return 500
        receiver.answer = first_fails
        webhook = h.feed.webhook(receiver.url("/first-fails"))
        tasks = []
        for _ in range(4):
            tasks += h.feed.tasks(webhook, count=300)
            await asyncio.sleep(0.5)
        for i in range(12):
            await asyncio.sleep(2.5)
            log = attempt_log(h)
            c = Counter((log[t.id][-1].status.value, (log[t.id][-1].error or "")[:40], log[t.id][-1].attempts) if log[t.id] else "none" for t in tasks)
            print(i, len(receiver.requests), len(h.dlt.messages), c.most_common(8), flush=True)
    finally:
        await stop_harness(h, stop, worker)
