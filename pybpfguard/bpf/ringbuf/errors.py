"""Errors of the ring buffer reader. All derive from :class:`~pybpfguard.bpf.errors.BPFError`."""

from __future__ import annotations

from pybpfguard.bpf.errors import BPFError


class RingBufferError(BPFError):
    """A ring buffer cannot be read: the map is not a ``BPF_MAP_TYPE_RINGBUF``, or the reader is closed."""


class RingCorruptError(RingBufferError):
    """A record header points past the producer position (or past the data area).

    The producer position only moves after a record is reserved in full, so a committed record that ends
    beyond it means the header (or the consumer position we stored) is corrupt. Nothing is committed for
    that record; the reader stays at ``consumer_pos``.

    Attributes: ``consumer_pos`` and ``producer_pos`` (ring positions, bytes), ``header`` (the raw u32 of
    ``struct bpf_ringbuf_hdr.len``), ``length`` (payload bytes it claims), ``size_bytes`` (data area size).
    """

    def __init__(self, consumer_pos: int, producer_pos: int, header: int, length: int, size_bytes: int) -> None:
        self.consumer_pos = consumer_pos
        self.producer_pos = producer_pos
        self.header = header
        self.length = length
        self.size_bytes = size_bytes
        super().__init__(consumer_pos, producer_pos, header, length, size_bytes)

    def __str__(self) -> str:
        return (
            f"ring buffer record at consumer_pos {self.consumer_pos} claims {self.length} bytes "
            f"(header {self.header:#010x}) and runs past producer_pos {self.producer_pos} "
            f"(data area {self.size_bytes} bytes)"
        )
