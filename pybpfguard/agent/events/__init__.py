"""The agent's event pipeline: ring records -> msgspec Structs -> a format (JSON lines) -> transports.

- :mod:`.records`, :mod:`.layout`: the ring-buffer record layouts (docs/records.md), shared with the
  BPF program generators (``BLOCK.offset("ino")``, ``BLOCK.size``).
- :mod:`.model`: one Struct per event type of docs/events.md, fields in the JSON's order.
- :mod:`.text`: the non-UTF-8 rule (U+FFFD text plus a ``<name>_b64`` sibling).
- :mod:`.decode`: record ``memoryview`` -> Struct, dispatched on the record's ``u32 type``.
- :mod:`.encode`: the JSON format, Struct -> one compact JSON line.
- :mod:`.queued`: a sink = format x transport, over one writer thread, backlog bound and drop count.
- :mod:`.stdout`, :mod:`.journald`: the transports (an fd; journald's native protocol) and their sinks.
- :mod:`.sinks`: ``--log=stdout|journald|both`` -> the set of sinks (:class:`.sinks.FanOut`).
- :mod:`.schema`: ``event-schema.json`` (shipped here) and ``validate(obj)``.
"""
