"""The agent's event pipeline: ring records -> msgspec Structs -> compact JSON lines -> sinks.

- :mod:`.records`, :mod:`.layout`: the ring-buffer record layouts (docs/records.md), shared with the
  BPF program generators (``BLOCK.offset("ino")``, ``BLOCK.size``).
- :mod:`.model`: one Struct per event type of REFERENCE §4.3, fields in the JSON's order.
- :mod:`.text`: the non-UTF-8 rule (U+FFFD text plus a ``<name>_b64`` sibling).
- :mod:`.decode`: record ``memoryview`` -> Struct, dispatched on the record's ``u32 type``.
- :mod:`.encode`: Struct -> one compact JSON line, into a reused buffer.
- :mod:`.stdout`, :mod:`.journald`, :mod:`.sinks`: where lines go (``--log=stdout|journald|both``).
- :mod:`.schema`: ``event-schema.json`` (shipped here) and ``validate(obj)``.
"""
