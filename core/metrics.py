"""Prometheus metrics, one registry per service (never the global one, so
two services in one test process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Image calls take seconds to minutes; acks must stay far below 3 s.
_MODEL_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, float("inf"))
_QUEUE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, float("inf"))
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, float("inf"))


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("imaginebot_jobs_total", "Jobs by final outcome.", ["platform", "kind", "outcome"], registry=r)
        self.images = Counter("imaginebot_images_generated_total", "Images delivered by the model.", ["platform"], registry=r)
        self.spent = Counter("imaginebot_spent_usd_total", "USD spent, from the API's usage.", ["platform"], registry=r)
        self.policy_blocks = Counter(
            "imaginebot_policy_blocks_total", "Requests blocked by OpenAI's safety system.", ["platform", "stage"], registry=r
        )
        self.queue_length = Gauge("imaginebot_queue_length", "Jobs waiting for a model slot or the per-minute budget.", registry=r)
        self.images_per_minute = Gauge(
            "imaginebot_images_per_minute", "The account's images-per-minute budget model calls are paced to.", registry=r
        )
        self.queue_wait = Histogram(
            "imaginebot_queue_wait_seconds", "Time a job waited in line for its turn.", buckets=_QUEUE_BUCKETS, registry=r
        )
        self.rate_limited = Counter(
            "imaginebot_rate_limited_total", "429 rate_limit_exceeded answers (each job went back to the head of the line).",
            registry=r,
        )
        self.in_flight = Gauge("imaginebot_model_calls_in_flight", "Model calls running now.", registry=r)
        self.model_days_left = Gauge(
            "imaginebot_model_days_left",
            "Days until OpenAI shuts down each configured model (+Inf: none announced; 0 or less: shut down).",
            ["model"],
            registry=r,
        )
        self.model_latency = Histogram(
            "imaginebot_model_call_seconds", "Time of one model call, retries included.", ["kind"], buckets=_MODEL_BUCKETS, registry=r
        )
        self.ack_latency = Histogram(
            "imaginebot_ack_seconds", "Time from a platform request to its ack/defer.", ["platform"], buckets=_ACK_BUCKETS, registry=r
        )

        # Relax mode (core/relax.py): outcomes, and what waits in the ledger as of the last round.
        self.relax_jobs = Counter(
            "imaginebot_relax_jobs_total", "Relax jobs by event (queued, delivered, refunded, cancelled, undelivered).",
            ["platform", "event"], registry=r,
        )  # fmt: skip
        self.relax_batches = Counter("imaginebot_relax_batches_total", "Batch API batches by event (submitted, then their final status).",
                                     ["event"], registry=r)  # fmt: skip
        self.relax_waiting = Gauge("imaginebot_relax_jobs_waiting", "Relax jobs waiting for the next batch.", registry=r)
        self.relax_in_batches = Gauge("imaginebot_relax_jobs_in_batches", "Relax jobs in a submitted batch, not yet delivered.", registry=r)
        self.relax_pending_batches = Gauge("imaginebot_relax_batches_pending", "Batches submitted and not finished.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
