"""Static security policy: what user code may import and touch, checked before it runs.

Pure functions over the source text (n8n-python-runner.md §6.2-6.3). The
runner calls :func:`validate` and, on
:class:`~taskbox.errors.SecurityViolation`, sends ``"Security violations
detected"`` with the violation lines as the description. This is defence in
depth and clear error messages; the OS layers in ``sandbox/`` are the boundary.
"""

from __future__ import annotations

from taskbox.policy.analyzer import analyze, validate
from taskbox.policy.policy import SecurityPolicy, parse_allowlist
from taskbox.policy.violations import Rule, Violation

__all__ = ["Rule", "SecurityPolicy", "Violation", "analyze", "parse_allowlist", "validate"]
