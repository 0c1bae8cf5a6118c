"""The agent: daemon, events, enforcement engines and the generators of its kernel programs."""
