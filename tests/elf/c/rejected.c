#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* Reads a packet without the bounds check the verifier demands: rejected. */
SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
    return *(__u32 *)(long)ctx->data == 0x45 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
