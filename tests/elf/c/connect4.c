#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* cgroup/connect4: deny connections to 127.0.0.1:<denied_port> (a .rodata constant set before load). */
const volatile __u16 denied_port = 0;
__u64 denied = 0;

SEC("cgroup/connect4")
int deny_port(struct bpf_sock_addr *ctx)
{
    if (ctx->user_ip4 == __builtin_bswap32(0x7f000001) && ctx->user_port == __builtin_bswap16(denied_port)) {
        __sync_fetch_and_add(&denied, 1);
        return 0;
    }
    return 1;
}

char LICENSE[] SEC("license") = "GPL";
