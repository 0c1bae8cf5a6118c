#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include "bpf_defs.h"

/* kfunc calls (resolved against vmlinux BTF at load) in a tp_btf program. */
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
__u64 runs = 0;

SEC("tp_btf/sched_process_exec")
int locked(__u64 *ctx)
{
    bpf_rcu_read_lock();
    __sync_fetch_and_add(&runs, 1);
    bpf_rcu_read_unlock();
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
