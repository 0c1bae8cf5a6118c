#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* bpf-to-bpf calls: a static subprogram and a global function in .text, called from two sections,
   and a bpf_loop callback summing into a context. */
struct loop_ctx { __u64 sum; __u32 step; };

static __noinline __u64 square(__u64 x) { return x * x; }

__noinline int twice(int x) { return 2 * x; }

static long add_step(__u32 index, void *data)
{
    struct loop_ctx *c = data;
    c->sum += square(index) + c->step;
    return 0;
}

SEC("socket")
int looper(struct __sk_buff *skb)
{
    struct loop_ctx c = { .sum = 0, .step = 1 };
    bpf_loop(5, add_step, &c, 0);   /* sum of i*i for i<5 (30) plus 5 steps */
    return c.sum + twice(skb->len > 0);
}

SEC("xdp")
int xdp_twice(struct xdp_md *ctx)
{
    return twice(1) + square(0);   /* XDP_TX (3) is twice(1) + 1; 2 is XDP_PASS */
}

char LICENSE[] SEC("license") = "GPL";
