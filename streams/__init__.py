"""The Faust worker: topics, agents and tables that wire healer's pure core to
Kafka and to the executors in ``actions``.

Thin by design: decode, call ``healer.engine`` / ``actions.runner``, produce.
"""
