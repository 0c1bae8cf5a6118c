#include "bpf_defs_min.h"
/* raw_tp/sys_enter: count every syscall entry. */
unsigned long long entries = 0;
SEC("raw_tp/sys_enter")
int count_enter(void *ctx) { __sync_fetch_and_add(&entries, 1); return 0; }
char LICENSE[] SEC("license") = "GPL";
