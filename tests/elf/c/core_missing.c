#include "vmlinux.h"
#include "bpf_defs.h"

/* A CO-RE read of a field no kernel has (task_struct___future.pocket_watch), without an existence check:
   the relocation poisons the instruction and the verifier rejects the program. */
struct task_struct___future {
    int pocket_watch;
} __attribute__((preserve_access_index));

int watched = 0;

SEC("tp_btf/sched_process_exec")
int read_missing(__u64 *ctx)
{
    struct task_struct___future *task = (void *)ctx[0];
    watched = task->pocket_watch;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
