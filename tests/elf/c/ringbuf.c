#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* A socket filter that reports each packet's length and first byte into a ring buffer. */
struct event { __u32 len; __u32 first; };

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

SEC("socket")
int report(struct __sk_buff *skb)
{
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->len = skb->len;
    e->first = skb->protocol;
    bpf_ringbuf_submit(e, 0);
    return 1;
}

char LICENSE[] SEC("license") = "GPL";
