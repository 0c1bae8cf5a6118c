#include "bpf_defs_min.h"
/* A reference to a variable no section defines: the relocation's symbol is undefined. */
extern int nowhere;
SEC("socket")
int reader(void *ctx) { return nowhere; }
char LICENSE[] SEC("license") = "GPL";
