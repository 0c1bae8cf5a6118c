#include "bpf_defs_min.h"
/* A legacy `maps` section map (struct bpf_map_def). */
struct bpf_map_def { unsigned int type, key_size, value_size, max_entries, map_flags; };
struct bpf_map_def SEC("maps") slots = { .type = 2 /* ARRAY */, .key_size = 4, .value_size = 8, .max_entries = 2 };
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
SEC("socket")
int touch(void *ctx)
{
    int key = 1;
    unsigned long long *v = bpf_map_lookup_elem(&slots, &key);
    if (v)
        *v += 7;
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
