"""Fault-injection scenarios against real ``healer run`` workers (``make chaos``).

One module per scenario (``sigkill``, ``broker_restart``, ``kube_faults``,
``triton_kill``, ``alert_storm``, ``poison``), each with ``run(ctx) -> Result``;
``bench/chaos/run.py`` runs them (``--short`` for CI) and prints, per scenario,
events in/out, actions executed, duplicates, losses and the audit chain status.
"""
