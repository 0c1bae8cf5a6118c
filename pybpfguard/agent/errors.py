"""The root of every error the agent raises on purpose.

Each agent error also derives from the builtin its callers used to catch (ValueError for bad input,
RuntimeError or OSError for the environment), so existing handlers keep working; a caller that wants
"anything the agent refused" catches :class:`AgentError`. Errors from the library derive from
:class:`pybpfguard.bpf.errors.BPFError` instead.
"""

from __future__ import annotations

__all__ = ["AgentError"]


class AgentError(Exception):
    """Root of pybpfguard.agent's own errors; the message names the input or location and what is wrong."""
