"""The worker's stages, one module each: ingest, decide, approvals, execute.

Each stage is thin: it turns Faust events into the core's inputs, calls the
pure rule in ``healer`` (``healer.ingest.plan_batch``,
``healer.decider.decide_batch``, ``healer.approvals.apply``,
``healer.ledger.admit``), hands the outputs to the producer, waits for the
broker's acks and only then writes its table. ``streams.app`` wires them to
topics; ``streams.stages.base`` holds what they share.
"""
