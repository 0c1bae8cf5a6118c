/* CO-RE relocations of every kind, on local subsets of kernel types (no vmlinux.h), for tests/elf/test_core.py.
 * Each struct is a flavour (___v2, ___local) of a kernel type: CO-RE matches it to the unsuffixed kernel type. */
typedef unsigned long long u64;
typedef unsigned int u32;

#define SEC(name) __attribute__((section(name), used))
#define CORE __attribute__((preserve_access_index))

/* __builtin_preserve_field_info kinds (clang): 0 byte offset, 1 byte size, 2 exists, 3 signed, 4 lshift, 5 rshift */
#define FIELD(expr, kind) __builtin_preserve_field_info(expr, kind)
/* __builtin_preserve_type_info kinds: 0 exists, 1 size, 2 matches; __builtin_btf_type_id: 0 local, 1 target */
#define TYPE(type, kind) __builtin_preserve_type_info(*(type *)0, kind)
#define TYPE_ID(type, kind) __builtin_btf_type_id(*(type *)0, kind)
/* __builtin_preserve_enum_value kinds: 0 exists, 1 value */
#define ENUMVAL(type, value, kind) __builtin_preserve_enum_value(*(type *)value, kind)

static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;

struct sched_entity___v2 {
	u64 vruntime;
} CORE;

struct task_struct___v2 {
	int pid;
	int tgid;
	struct task_struct___v2 *real_parent;
	char comm[16];
	unsigned int in_execve : 1;
	unsigned long flags;  /* the kernel's is an unsigned int: the load narrows to 4 bytes */
	long prio;            /* the kernel's is a (signed) int: a narrower signed load is refused, poisoned */
	int pocket_watch;     /* in no kernel: poisoned */
	struct sched_entity___v2 se;  /* a struct member: any two structs are compatible, matched by name */
} CORE;

struct sk_buff___local {  /* the kernel's next is inside an anonymous struct in an anonymous union */
	struct sk_buff___local *next;
	unsigned int len;
} CORE;

struct list_head___v2 {  /* the kernel's exactly: TYPE_MATCHES holds */
	struct list_head___v2 *next, *prev;
} CORE;

struct cgroup___v2 {  /* the kernel's ancestors is a flexible array member too: any index is in bounds */
	int level;
	struct cgroup___v2 *ancestors[];
} CORE;

struct not_in_kernel___v1 {
	int x;
} CORE;

enum pid_type___v2 { PIDTYPE_PID___v2, PIDTYPE_TGID___v2, PIDTYPE_NOPE___v2 };

SEC("tp_btf/sched_process_exec")
int reads(u64 *ctx)
{
	struct task_struct___v2 *t = (void *)ctx[0];
	struct task_struct___v2 *parent = 0;
	char c = 0;
	u64 out = t->pid + t->tgid + t->flags;

	bpf_probe_read_kernel(&parent, sizeof(parent), &t->real_parent);
	bpf_probe_read_kernel(&c, 1, &t->comm[3]);
	return out + (u64)parent + c;
}

SEC("socket")
int kinds(void *ctx)
{
	struct task_struct___v2 *t = ctx;
	u64 r = 0;

	r += FIELD(t->pid, 2);
	r += FIELD(t->pocket_watch, 2) << 1;
	r += FIELD(t->real_parent, 1) << 2;
	r += FIELD(t->pid, 3) << 3;
	r += FIELD(t->flags, 3) << 4;
	r += TYPE(struct task_struct___v2, 1) << 5;
	r += TYPE(struct task_struct___v2, 0) << 6;
	r += TYPE(struct not_in_kernel___v1, 0) << 7;
	r += TYPE(struct not_in_kernel___v1, 1) << 8;
	r += TYPE_ID(struct task_struct___v2, 1) << 9;
	r += TYPE_ID(struct task_struct___v2, 0) << 10;
	r += ENUMVAL(enum pid_type___v2, PIDTYPE_TGID___v2, 1) << 11;
	r += ENUMVAL(enum pid_type___v2, PIDTYPE_TGID___v2, 0) << 12;
	r += ENUMVAL(enum pid_type___v2, PIDTYPE_NOPE___v2, 0) << 13;
	r += TYPE(struct list_head___v2, 2) << 14;
	r += TYPE(struct task_struct___v2, 2) << 15;
	return r;
}

SEC("socket")
int bitfield(void *ctx)
{
	struct task_struct___v2 *t = ctx;
	u64 val = 0;

	bpf_probe_read_kernel(&val, FIELD(t->in_execve, 1), (char *)t + FIELD(t->in_execve, 0));
	val <<= FIELD(t->in_execve, 4);
	val >>= FIELD(t->in_execve, 5);
	return val;
}

SEC("socket")
int anonymous(void *ctx)
{
	struct sk_buff___local *skb = ctx;

	return skb->len + (u64)skb->next;
}

SEC("socket")
int writes(void *ctx)
{
	struct task_struct___v2 *t = ctx;

	t->tgid = 7;                   /* stores: their off is relocated as a load's */
	t->pid = (int)(long)ctx;
	return t[1].pid + t->se.vruntime; /* "1:0": past a whole task_struct; a member of a member */
}

SEC("socket")
int flexible(void *ctx)
{
	struct cgroup___v2 *cgrp = ctx;
	struct cgroup___v2 *ancestor = 0;

	bpf_probe_read_kernel(&ancestor, sizeof(ancestor), &cgrp->ancestors[2]);
	return (long)ancestor + cgrp->level;
}

SEC("socket")
int missing(void *ctx)
{
	struct task_struct___v2 *t = ctx;

	return t->pocket_watch;
}

SEC("socket")
int narrowed_signed(void *ctx)
{
	struct task_struct___v2 *t = ctx;

	return t->prio;
}

SEC("socket")
int missing_enum(void *ctx)
{
	return ENUMVAL(enum pid_type___v2, PIDTYPE_NOPE___v2, 1);
}

/* Loaded by the test: run with BPF_PROG_TEST_RUN, "current" is the test's own thread. */
static void *(*bpf_get_current_task)(void) = (void *)35;

SEC("tc")
int current_tgid(void *ctx)
{
	struct task_struct___v2 *t = bpf_get_current_task();
	int tgid = 0;

	bpf_probe_read_kernel(&tgid, sizeof(tgid), &t->tgid);
	return tgid;
}

SEC("classifier")
int current_parent_tgid(void *ctx)
{
	struct task_struct___v2 *t = bpf_get_current_task();
	struct task_struct___v2 *parent = 0;
	int tgid = 0;

	bpf_probe_read_kernel(&parent, sizeof(parent), &t->real_parent);
	bpf_probe_read_kernel(&tgid, sizeof(tgid), &parent->tgid);
	return tgid;
}
