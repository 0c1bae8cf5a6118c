#include "vmlinux.h"
#include "bpf_defs.h"
/* CO-RE: vmlinux.h marks every struct preserve_access_index, so each field read is a relocation. */
__u32 seen_len = 0;
SEC("socket")
int core_len(struct __sk_buff *skb) { seen_len = skb->len; return 1; }
char LICENSE[] SEC("license") = "GPL";
