#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* Global data in every kind of section; the program returns a sum the test predicts. */
const volatile __u32 scale = 1;
const volatile __u64 offset = 0;
__u32 calls = 0;            /* .bss */
__u32 base = 100;           /* .data */
__u32 extra SEC(".data.extra") = 5;
const __u32 table[4] SEC(".rodata.table") = {1, 2, 3, 4};

SEC("socket")
int sum(struct __sk_buff *skb)
{
    calls++;
    __u32 i = skb->len & 3;
    return base * scale + offset + extra + table[i] + calls;
}

char LICENSE[] SEC("license") = "GPL";
