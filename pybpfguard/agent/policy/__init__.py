"""Policies (docs/policy.md): the model, parsing and lint, bundles and keys, apply, simulate and explain."""
