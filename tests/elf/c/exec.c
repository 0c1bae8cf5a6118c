#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* tp_btf/sched_process_exec: record the tgid of every exec, value = times seen. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, __u32);
} execs SEC(".maps");

SEC("tp_btf/sched_process_exec")
int on_exec(__u64 *ctx)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32, one = 1;
    __u32 *seen = bpf_map_lookup_elem(&execs, &tgid);
    if (seen)
        __sync_fetch_and_add(seen, 1);
    else
        bpf_map_update_elem(&execs, &tgid, &one, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
