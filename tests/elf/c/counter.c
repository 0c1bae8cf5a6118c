#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* Two programs in one section counting into one hash map, keyed by which program ran. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 key)
{
    __u64 one = 1, *value = bpf_map_lookup_elem(&counts, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, 0);
}

SEC("socket")
int count_a(struct __sk_buff *skb) { bump(1); return 0; }

SEC("socket")
int count_b(struct __sk_buff *skb) { bump(2); return 0; }

char LICENSE[] SEC("license") = "GPL";
