"""Reading BPF ring buffers (``BPF_MAP_TYPE_RINGBUF``, Linux 5.8+) from Python, zero-copy.

- :class:`Ring`: the consumer algorithm over any three buffers (``ring``);
- :class:`RingReader`: a kernel ring mapped into this process, with ``fileno()``/``wait()``/``poll()``
  (``reader``);
- :class:`RingPoller`: one epoll set over several readers (``poller``).

Usage::

    with RingReader(events_map) as reader:        # borrows events_map
        while running:
            reader.poll(handle, timeout_s=1.0)   # handle(memoryview) per record, valid during the call
        for rec in reader.records(limit=1024):   # or iterate; commits when the loop ends
            ...
"""

from pybpfguard.bpf.ringbuf.errors import RingBufferError, RingCorruptError
from pybpfguard.bpf.ringbuf.poller import RingPoller
from pybpfguard.bpf.ringbuf.reader import BPF_MAP_TYPE_RINGBUF, PAGE_SIZE, RingReader
from pybpfguard.bpf.ringbuf.ring import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    RINGBUF_LEN_MASK,
    RecordCallback,
    Ring,
    record_span,
)

__all__ = [
    "BPF_MAP_TYPE_RINGBUF",
    "BPF_RINGBUF_BUSY_BIT",
    "BPF_RINGBUF_DISCARD_BIT",
    "BPF_RINGBUF_HDR_SZ",
    "PAGE_SIZE",
    "RINGBUF_LEN_MASK",
    "RecordCallback",
    "Ring",
    "RingBufferError",
    "RingCorruptError",
    "RingPoller",
    "RingReader",
    "record_span",
]
