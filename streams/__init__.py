"""The worker and its Kafka edges: the Faust app (``streams.app``) and its stages
(``streams.stages``), the audit sealer, the HTTP API (Alertmanager receiver, remote
write, approvals), plain Kafka clients for the CLI, and the embedded broker.

Thin: a stage decodes a batch, calls one pure rule of the core
(``healer.ingest.plan_batch``, ``healer.decider.decide_batch``,
``healer.approvals.apply``, ``healer.ledger.admit``; the sealer ``healer.chain.seal``),
hands the outputs to the producer and writes its table once the broker acked them;
executors run through ``actions.runner``. No decision or lifecycle rule lives here
(docs/design.md, "Layout"; docs/architecture.md, "Stages").
"""
