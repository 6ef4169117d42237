"""Prometheus metrics of the servers (``prometheus-client``), one registry per process.

Each server shows its own at ``/metrics`` (faqbot.server.health); a metric that
a process never touches stays at zero there. Labels never carry customer data: FAQ ids,
operation names and outcomes only.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "faqbot_request_seconds",
    "Time to answer an HTTP request",
    ["server", "route", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.45, 0.75, 1.0, 2.5, 5.0, 10.0),
)
LOCK_WAIT_SECONDS = Histogram(
    "faqbot_lock_wait_seconds",
    "Time a turn waited for its conversation's lock",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LOCK_ERRORS = Counter("faqbot_lock_errors_total", "Conversation locks that could not be taken or kept", ["reason"])
TRACKER_STORE_ERRORS = Counter(
    "faqbot_tracker_store_errors_total", "Failed reads and writes of conversations", ["operation", "reason"]
)
OUTBOX_BACKLOG = Gauge("faqbot_outbox_backlog", "Deliveries of tickets waiting to be sent")
OUTBOX_FAILURES = Counter("faqbot_outbox_failures_total", "Failed delivery attempts", ["target"])
OUTBOX_SENT = Counter("faqbot_outbox_sent_total", "Deliveries sent", ["target"])
OUTBOX_GIVEN_UP = Counter(
    "faqbot_outbox_given_up_total", "Deliveries that failed for good (after the last retry)", ["target"]
)
# outcome: answer (the FAQ's answer sent), clarification ("Meinten Sie …?", faq = the likeliest),
# escalation (a new ticket, faq = the NLU's guess), escalation_failed (ticket not stored), fallback
# (nothing fitted, the support team offered; faq = "keine"). Counted by the actions (actions/).
FAQ_OUTCOMES = Counter(
    "faqbot_faq_outcomes_total",
    "How the bot handled customer messages, per FAQ (answer, clarification, escalation)",
    ["faq", "outcome"],
)
