#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* The object of docs/library.md: a constant, a counter in .bss and a ring buffer of packet lengths. */
const volatile __u32 scale = 1;
__u32 runs = 0;

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

SEC("socket")
int guide(struct __sk_buff *skb)
{
    __u32 len = skb->len;
    runs++;
    bpf_ringbuf_output(&events, &len, sizeof(len), 0);
    return scale * len;
}

char LICENSE[] SEC("license") = "GPL";
