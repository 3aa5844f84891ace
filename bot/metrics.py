"""Prometheus metrics, one registry per app so tests can run several apps in one process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass
class Metrics:
    """The counters and histograms that matter to an operator."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # `serve --workers`: where every worker keeps its numbers, so /metrics (answered by any one
    # of them) reports them all, summed; None for one process.
    shared: Path | None = None

    def __post_init__(self) -> None:
        """Create every metric on this app's registry."""
        r = self.registry
        self.requests = Counter("releasebot_requests", "HTTP requests by kind and status",
                                ["kind", "status"], registry=r)
        self.ack_seconds = Histogram("releasebot_ack_seconds", "Time to answer Slack and GitLab",
                                     ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.transitions = Counter("releasebot_transitions", "Release state changes by event",
                                   ["event", "to_state"], registry=r)
        self.refused = Counter("releasebot_privileged_refusals",
                               "Events refused because the person lacks the role", ["event"],
                               registry=r)
        self.slack_calls = Counter("releasebot_slack_calls", "Slack Web API calls",
                                   ["method", "outcome"], registry=r)
        self.gitlab_calls = Counter("releasebot_gitlab_calls", "GitLab API calls",
                                    ["method", "outcome"], registry=r)
        self.shed = Counter("releasebot_requests_shed", "Slack requests answered 'busy', not done",
                            registry=r)
        # Set when /metrics is read: with workers, the reading worker's value is the one shown.
        self.outbox_backlog = Gauge("releasebot_outbox_backlog",
                                    "Announcements waiting to be posted", registry=r,
                                    multiprocess_mode="mostrecent")
        self.poll_lag = Gauge("releasebot_poll_lag_seconds",
                              "Seconds since the last completed GitLab poll", registry=r,
                              multiprocess_mode="mostrecent")

    def render(self) -> bytes:
        """The Prometheus text exposition (with workers: of all of them)."""
        if self.shared is None:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, path=str(self.shared))
        return generate_latest(everyone)
