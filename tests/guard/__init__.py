"""Tests of the fanotify file guard (pybpfguard.agent.file_guard)."""
