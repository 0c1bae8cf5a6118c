#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* A map pinned by name, so two loads share it; and a map of maps whose slot 1 is inner_a. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} shared SEC(".maps");

struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4); __type(key, __u32); __type(value, __u32); };
struct inner inner_a SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, __u32);
    __array(values, struct inner);
} outer SEC(".maps") = { .values = { [1] = &inner_a } };

SEC("socket")
int bump_shared(struct __sk_buff *skb)
{
    __u32 key = 0;
    __u64 *value = bpf_map_lookup_elem(&shared, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
    key = 1;
    return bpf_map_lookup_elem(&outer, &key) != 0;  /* 1: slot 1 holds inner_a */
}

char LICENSE[] SEC("license") = "GPL";
