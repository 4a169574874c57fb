"""Executors: the only code that changes Kubernetes, Triton or calls webhooks.

Each executor implements snapshot -> execute -> verify -> rollback for one
catalog action (see ``healer.catalog``); ``actions.runner`` drives them with
retries, timeouts and an audit record for every step.
"""
