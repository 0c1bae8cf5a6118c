#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* A typed __ksym: the per-CPU kernel variable bpf_prog_active, read through bpf_this_cpu_ptr. */
extern const int bpf_prog_active __ksym;
static void *(*bpf_this_cpu_ptr)(const void *percpu_ptr) = (void *)154;
__u64 runs = 0;
int active = -1;

SEC("tp_btf/sched_process_exec")
int read_active(__u64 *ctx)
{
    const int *p = bpf_this_cpu_ptr(&bpf_prog_active);
    active = *p;
    __sync_fetch_and_add(&runs, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
