"""healer: event-driven self-healing for model-serving fleets.

The ``healer`` package is the pure core: models, the policy language and its
engine, guards, the action catalog, the ledger and the audit hash chain. It
never imports Kafka, Faust, Kubernetes or Triton clients (the CLI imports them
lazily); ``streams`` and ``actions`` build on it.
"""

__version__ = "0.1.0"
