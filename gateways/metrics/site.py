"""The ``[metrics] listen`` site: ``/metrics`` and ``/healthz``, nothing else (404), no
access log (a scrape every 15 s would fill it)."""

from __future__ import annotations

from twisted.web import resource, server

from .health import HealthCheck, HealthResource


class MetricsResource(resource.Resource):
    """GET ``/metrics``: the exposition of ``metrics`` (a :class:`~.recorder.Metrics`), made from
    memory on the reactor (no SQL, no thread)."""
    isLeaf = True

    def __init__(self, metrics):
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request):
        accept = request.getHeader(b"accept")
        body, content_type = self.metrics.exposition(accept.decode("latin-1") if accept else None)
        request.setHeader(b"Content-Type", content_type.encode("latin-1"))
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    render_HEAD = render_GET


class _Root(resource.Resource):
    def render_GET(self, request):
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Haven: /metrics and /healthz\n"


class _Quiet(server.Site):
    def log(self, request):  # no access log line per scrape
        pass


def make_metrics_site(metrics, health: HealthCheck) -> server.Site:
    root = _Root()
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"healthz", HealthResource(health))
    site = _Quiet(root)
    site.displayTracebacks = False
    site.noisy = False
    return site
