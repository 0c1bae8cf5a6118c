#include "bpf_defs_min.h"
/* A program in a section no loader knows. */
SEC("frobnicate/now")
int odd(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
