"""The tenant portal: endpoints, deliveries and dead letters in the browser (issue 17).

Server-rendered pages (Jinja2, autoescaped) with htmx for live updates, served by the gateway
(``producers.portal.app.mount``) under ``/portal/``; access by signed, expiring links from
``POST /v1/portal-links``.
"""

from producers.portal.app import mount

__all__ = ["mount"]
