#include "vmlinux.h"
#include "bpf_defs.h"

/* tp_btf exec tracer with CO-RE reads of task_struct (vmlinux.h marks its structs preserve_access_index)
   and a field-existence check through a flavour (task_struct___future matches task_struct). */
struct task_struct___future {
    int pocket_watch;
} __attribute__((preserve_access_index));

struct exec_seen { __u32 ppid; __s32 has_pocket_watch; };

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct exec_seen);
} execs SEC(".maps");

SEC("tp_btf/sched_process_exec")
int on_exec_core(__u64 *ctx)
{
    struct task_struct *task = (void *)ctx[0];
    __u32 tgid = task->tgid;
    struct exec_seen seen = {
        .ppid = task->real_parent->tgid,
        .has_pocket_watch = __builtin_preserve_field_info(((struct task_struct___future *)task)->pocket_watch, 2),
    };
    bpf_map_update_elem(&execs, &tgid, &seen, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
