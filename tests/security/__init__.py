"""Security tests: each reproduces a finding of issue 13 against real components."""
