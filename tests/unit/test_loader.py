"""Policy loading: every error names the file, the line and a fix; invalid
policies never reach the engine; directories and multi-document files."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.catalog import default_catalog
from healer.loader import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    PolicyLoadError,
    load_documents,
    load_paths,
    load_policy_set,
)

GOOD = """\
apiVersion: healer/v1
kind: Policy
metadata:
  name: good
spec:
  trigger:
    alert:
      matchers: ['alertname="X"']
  target:
    kind: Deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment }}"
  actions:
    - use: kubernetes.scale
      with: {replicas: "+1", max: 10}
  guards:
    cooldown: 5m
"""
# line numbers of GOOD: 6 trigger, 8 matchers, 9 target, 11 namespace, 13 actions,
# 14 use, 15 with, 16 guards, 17 cooldown

METRIC = """\
apiVersion: healer/v1
kind: Policy
metadata: {name: m}
spec:
  trigger:
    metric:
      name: load
      group_by: [namespace]
      threshold: 5
      window: 1m
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
"""


def _errors(text: str) -> list[tuple[int | None, str, str]]:
    res = load_documents(text, "p.yaml", default_catalog())
    assert all(e.file == "p.yaml" for e in res.errors)
    return [(e.line, e.message, e.hint) for e in res.errors]


def test_good_loads() -> None:
    res = load_documents(GOOD, "p.yaml", default_catalog())
    assert res.errors == [] and [p.name for p in res.policies] == ["good"]
    assert res.policies[0].source == "p.yaml:1"


CASES = [
    # (id, replace-from, replace-to, line, message part, hint part)
    (
        "typo in guards field",
        "    cooldown: 5m",
        "    coldown: 5m",
        17,
        "unknown field 'spec.guards.coldown'",
        "did you mean 'cooldown'?",
    ),
    (
        "typo in spec field",
        "  trigger:",
        "  tigger:",
        6,
        "unknown field 'spec.tigger'",
        "did you mean 'trigger'?",
    ),
    (
        "python spelling of an alias",
        "      with: {",
        "      with_: {",
        15,
        "unknown field 'spec.actions.0.with_'",
        "did you mean 'with'?",
    ),
    (
        "unknown action",
        "use: kubernetes.scale",
        "use: kubernetes.scal",
        14,
        "unknown action 'kubernetes.scal'",
        "did you mean 'kubernetes.scale'?",
    ),
    (
        "bad with value",
        '{replicas: "+1", max: 10}',
        '{replicas: "lots", max: 10}',
        15,
        "bad params for kubernetes.scale",
        "",
    ),
    ("unknown with param", '{replicas: "+1", max: 10}', '{replica: "+1"}', 15, "replica", ""),
    (
        "action on the wrong kind",
        'use: kubernetes.scale\n      with: {replicas: "+1", max: 10}',
        "use: kubernetes.delete_pod",
        14,
        "kubernetes.delete_pod cannot act on a Deployment",
        "",
    ),
    (
        "bad matcher regex",
        """['alertname="X"']""",
        """['alertname="X"', 'pod=~"("']""",
        8,
        "bad regex in matcher",
        "",
    ),
    ("bad matcher syntax", """['alertname="X"']""", """['alertname=="X"']""", 8, "bad matcher", ""),
    (
        "two matchers in one item",
        """['alertname="X"']""",
        """['alertname="X",severity="critical"']""",
        8,
        "a comma outside quotes separates matchers",
        "one matcher per list item: 'alertname=\"X\"', 'severity=\"critical\"'",
    ),
    (
        "regex RE2 refuses",
        """['alertname="X"']""",
        """\n        - alertname="X"\n        - pod=~"(?=canary)"\n""",
        10,
        "bad regex in matcher 'pod=~\"(?=canary)\"': invalid perl operator",
        "RE2 syntax",
    ),
    (
        "target kind in lower case",
        "    kind: Deployment",
        "    kind: deployment",
        10,
        "spec.target.kind: Input should be 'Deployment'",
        "did you mean 'Deployment'?",
    ),
    (
        "target kind misspelt",
        "    kind: Deployment",
        "    kind: Deploymnet",
        10,
        "spec.target.kind",
        "did you mean 'Deployment'?",
    ),
    (
        "bad template",
        '"{{ labels.deployment }}"',
        '"{{ labels.deployment | lower }}"',
        12,
        "is not allowed",
        "",
    ),
    ("bad duration", "cooldown: 5m", "cooldown: 5 minutes", 17, "not a duration", ""),
    (
        "missing target field",
        '    name: "{{ labels.deployment }}"\n',
        "",
        9,
        "Deployment targets need ['name']",
        "",
    ),
    (
        "wrong target field",
        '    name: "{{ labels.deployment }}"',
        "    name: x\n    model: y",
        9,
        "remove ['model']",
        "",
    ),
    ("bad enum", "  guards:\n", "  guards:\n    approval: sometimes\n", 17, "approval", ""),
    (
        "enum in another case",
        "  guards:\n",
        "  guards:\n    approval: Manual\n",
        17,
        "approval",
        "did you mean 'manual'?",
    ),
    ("bad policy name", "  name: good", "  name: Good_Policy", 4, "DNS-1123", ""),
    (
        "both triggers",
        "      matchers: ['alertname=\"X\"']",
        "      matchers: ['alertname=\"X\"']\n    metric: {name: x, threshold: 1}",
        6,
        "exactly one of",
        "",
    ),
    ("wrong apiVersion", "apiVersion: healer/v1", "apiVersion: healer/v2", 1, "apiVersion", ""),
    (
        "times below 1",
        '      with: {replicas: "+1", max: 10}',
        '      with: {replicas: "+1", max: 10}\n      times: 0',
        16,
        "times",
        "",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "line", "msg", "hint"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_errors_name_line_and_fix(old: str, new: str, line: int, msg: str, hint: str) -> None:
    assert old in GOOD
    errs = _errors(GOOD.replace(old, new, 1))
    assert len(errs) == 1, errs
    got_line, got_msg, got_hint = errs[0]
    assert msg in got_msg, got_msg
    assert hint in got_hint
    assert got_line == line, errs


def test_namespaces_guard_needs_a_namespaced_target() -> None:
    node = GOOD.replace(
        '    kind: Deployment\n    namespace: "{{ labels.namespace }}"\n', "    kind: Node\n"
    )
    node = node.replace(
        'use: kubernetes.scale\n      with: {replicas: "+1", max: 10}', "use: kubernetes.cordon"
    )
    assert _errors(node) == []
    [(line, msg, _)] = _errors(node + '    namespaces: ["llm-*"]\n')
    assert line == 16 and "Node targets have no namespace" in msg


def test_unknown_kind_and_yaml_syntax() -> None:
    assert _errors(GOOD.replace("kind: Policy", "kind: Polcy")) == [
        (2, "unknown kind 'Polcy'", "did you mean 'Policy'?")
    ]
    assert _errors(GOOD.replace("kind: Policy", "kind: Job")) == [
        (2, "unknown kind 'Job'", "use kind: Policy or kind: Silence")
    ]
    [(line, msg, hint)] = _errors(GOOD.replace("    cooldown: 5m", "    cooldown: [5m"))
    assert line == 18 and msg.startswith("YAML syntax") and "indentation" in hint
    [(line, msg, _)] = _errors(
        GOOD.replace("  guards:\n", "  guards:\n    dry_run: true\n    dry_run: false\n")
    )
    assert line == 18 and "duplicate key 'dry_run'" in msg
    assert _errors("- just\n- a list\n")[0][1].startswith("a document must be a mapping")


def test_metric_target_must_use_group_by_labels() -> None:
    [(line, msg, _)] = _errors(METRIC)
    assert line == 11 and "add 'deployment' to trigger.metric.group_by" in msg
    assert _errors(METRIC.replace("[namespace]", "[namespace, deployment]")) == []
    [(_, msg, _)] = _errors(METRIC.replace("threshold: 5", "threshold: 5\n      aggregate: median"))
    assert "aggregate" in msg
    [(_, msg, _)] = _errors(METRIC.replace("      threshold: 5\n", ""))
    assert "missing required field 'spec.trigger.metric.threshold'" in msg
    [(_, msg, _)] = _errors(METRIC.replace("window: 1m", "window: 0s"))
    assert "window must be longer than 0" in msg


def test_silences() -> None:
    ok = """\
apiVersion: healer/v1
kind: Silence
metadata: {name: maint}
spec:
  matchers: ['namespace="llm-prod"']
  startsAt: "2026-11-21T22:00:00Z"
  endsAt: "2026-11-22T02:00:00Z"
"""
    res = load_documents(ok, "s.yaml", default_catalog())
    assert not res.errors and res.silences[0].name == "maint"
    assert (
        "endsAt must be after startsAt"
        in _errors(ok.replace("2026-11-22T02", "2026-11-21T21"))[0][1]
    )
    assert (
        "timezone" in _errors(ok.replace('"2026-11-21T22:00:00Z"', '"2026-11-21T22:00:00"'))[0][1]
    )
    assert _errors(ok.replace("['namespace=\"llm-prod\"']", "['namespace=~\"(\"']"))[0][0] == 5


def test_all_errors_are_collected(tmp_path: Path) -> None:
    multi = (
        GOOD.replace("coold", "xoold")
        + "---\n"
        + GOOD.replace("name: good", "name: two")
        .replace("tigger", "x")
        .replace("  trigger:", "  tigger:")
    )
    (tmp_path / "a.yaml").write_text(multi)
    (tmp_path / "b.yml").write_text(GOOD.replace("kubernetes.scale", "kubernetes.nope"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    res = load_paths([tmp_path])
    where = sorted((Path(e.file).name, e.line) for e in res.errors)
    assert where == [("a.yaml", 17), ("a.yaml", 24), ("b.yml", 14)]
    with pytest.raises(PolicyLoadError) as exc:
        load_policy_set([tmp_path])
    assert len(exc.value.errors) == 3 and "a.yaml:17" in str(exc.value)


def test_duplicate_names(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "---\n" + GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("# comment\n" + GOOD)
    res = load_paths([tmp_path])
    msgs = [str(e) for e in res.errors]
    assert len(msgs) == 2
    assert all("policy name 'good' already defined at" in m for m in msgs)
    assert any(m.startswith(f"{tmp_path / 'a.yaml'}:19") for m in msgs)
    assert any(m.startswith(f"{tmp_path / 'sub' / 'b.yaml'}:2") for m in msgs)


def test_paths_edge_cases(tmp_path: Path) -> None:
    res = load_paths([tmp_path / "missing"])
    assert res.errors[0].message == "no such file or directory"
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_FILE_BYTES + 1))
    assert "larger than" in load_paths([big]).errors[0].message
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n---\n# nothing\n")
    res = load_paths([empty])
    assert res.errors == [] and res.policies == []


def test_error_str_is_file_line_message_hint() -> None:
    res = load_documents(
        GOOD.replace("    cooldown", "    coldown"), "dir/p.yaml", default_catalog()
    )
    assert str(res.errors[0]) == (
        "dir/p.yaml:17: unknown field 'spec.guards.coldown' (hint: did you mean 'cooldown'?)"
    )


def test_library_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "policies"
    res = load_paths([root])
    assert res.errors == [], [str(e) for e in res.errors]
    assert len(res.policies) >= 10


BAD = """\
apiVersion: healer/v1
kind: Policy
metadata:
  name: llm-latency-scale-out
spec:
  trigger:
    alert:
      matchers: ['alertname="LLMHighLatency"']
  target:
    kind: Deployment
    namespace: "{{ labels.namespace }}"
    name: "{{ labels.deployment | lower }}"
  actions:
    - use: kubernetes.scale
      with: {replicas: "+1", maximum: 10}
    - use: webhook.notfy
      with: {url: "https://hooks.example.com/oncall"}
  guards:
    coldown: 10m
"""


def test_every_error_of_a_document_in_one_pass() -> None:
    """Structure, templates, actions and params are all checked together."""
    errs = _errors(BAD)
    assert [line for line, _, _ in errs] == [12, 15, 16, 19]
    assert errs[0][1].startswith("spec.target.name: template '{{ labels.deployment | lower }}'")
    assert errs[1][1] == (
        "spec.actions.0.with: bad params for kubernetes.scale: "
        "unknown parameter 'maximum' (did you mean 'max'?)"
    )
    assert errs[2][1].startswith("spec.actions.1.use: unknown action 'webhook.notfy'")
    assert errs[2][2] == "did you mean 'webhook.notify'?"
    assert errs[3][1:] == ("unknown field 'spec.guards.coldown'", "did you mean 'cooldown'?")


def alias_bomb(levels: int) -> str:
    """Issue 13, finding 6: each level lists the previous one ten times."""
    lines = [
        "apiVersion: healer/v1",
        "kind: Policy",
        "metadata: {name: bomb}",
        "spec:",
        '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    for i in range(1, levels + 1):
        lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_a_load_error_at_the_alias() -> None:
    # 5 levels (10**5 strings) are enough to cross the cap and, without it, still finish
    # fast; tests/security/test_policy_files.py loads the 8-level bomb (10**9) in a subprocess
    bomb = alias_bomb(5)
    [(line, msg, hint)] = _errors(bomb)
    # l1 builds 110 values through aliases, l2 1,110, l3 11,110: over the cap at line 8
    assert line == 8 and f"more than {MAX_ALIAS_NODES} values" in msg
    assert "alias bomb" in hint


def test_the_alias_cap_counts_across_the_documents_of_a_file() -> None:
    doc = alias_bomb(2)  # 7 lines; l1 builds 110 values through aliases, l2 1,110
    text = "---\n".join(doc.replace("name: bomb", f"name: d{i}") for i in range(9))
    errs = _errors(text)
    # 8 documents stay under the cap (8 x 1,220 values); the 9th's l2 (line 8 * 8 + 7) does not
    assert [(line, m) for line, m, _ in errs if "alias" in m] == [
        (71, f"YAML aliases expand to more than {MAX_ALIAS_NODES} values in this file")
    ]


def test_shared_anchors_load() -> None:
    """Aliases within the cap are fine: a ladder repeating one step's parameters."""
    text = GOOD.replace(
        '    - use: kubernetes.scale\n      with: {replicas: "+1", max: 10}\n',
        '    - use: kubernetes.scale\n      with: &w {replicas: "+1", max: 10}\n'
        "    - use: kubernetes.scale\n      with: *w\n",
    )
    res = load_documents(text, "p.yaml", default_catalog())
    assert res.errors == [], res.errors
    assert [s.with_ for s in res.policies[0].steps] == [{"replicas": "+1", "max": 10}] * 2


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: healer/v1\nkind: Policy\nmetadata: {name: s}\nspec: &s\n  more: *s\n",
        "a: &x [1, *x]\n",
        "a: &x {b: [*x]}\n",
    ],
    ids=["mapping", "sequence", "nested"],
)
def test_self_reference_is_a_load_error(text: str) -> None:
    [(line, msg, hint)] = _errors(text)
    assert line is not None and "refers to a node that contains it" in msg and hint


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000])
def test_deep_nesting_is_a_load_error(depth: int) -> None:
    [(line, msg, _)] = _errors("a: " + "[" * depth + "]" * depth + "\n")
    assert line == 1 and ("nests deeper than" in msg or "maximum nesting depth" in msg), msg


def test_recursion_error_anywhere_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A last resort: a RecursionError the bounds did not foresee still names the file."""
    import healer.loader as loader

    def deep(*_: object, **__: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(loader.PolicyDoc, "model_validate", deep)
    [(line, msg, hint)] = _errors(GOOD)
    assert line == 1 and "nests too deeply" in msg and str(MAX_DEPTH) in hint


def _revision(matchers: str) -> str:
    res = load_documents(GOOD.replace("""['alertname="X"']""", matchers), "p.yaml", default_catalog())
    assert res.errors == [], res.errors
    return res.policies[0].revision


def test_one_revision_per_matcher_meaning() -> None:
    """Issue 15: `namespace=llm` and `namespace="llm"` are one policy, one set of action ids."""
    base = _revision("""['alertname="X"', 'namespace="llm"']""")
    assert _revision("""['alertname=X', 'namespace=llm']""") == base
    assert _revision("""['alertname = "X"', ' namespace="llm"']""") == base
    assert _revision("""['namespace="llm"', 'alertname="X"']""") == base  # a conjunction
    assert _revision("""['alertname="X"', 'namespace="llm"', 'namespace=llm']""") == base
    assert _revision("""['alertname="X"', 'namespace="llm2"']""") != base
    assert _revision("""['alertname="X"', 'namespace=~"llm"']""") != base
