/* lsm/file_open denying the inodes in a map, reading file->f_inode->i_ino through CO-RE (no vmlinux.h). */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
typedef unsigned long long __u64;
typedef unsigned char __u8;

struct inode { unsigned long i_ino; } __attribute__((preserve_access_index));
struct file { struct inode *f_inode; } __attribute__((preserve_access_index));

struct {
    __uint(type, 1); /* BPF_MAP_TYPE_HASH */
    __uint(max_entries, 16);
    __type(key, __u64);
    __type(value, __u8);
} denied SEC(".maps");

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

SEC("lsm/file_open")
int deny_open(__u64 *ctx)
{
    struct file *file = (struct file *)ctx[0];
    __u64 ino = file->f_inode->i_ino;
    return bpf_map_lookup_elem(&denied, &ino) ? -1 : 0; /* -EPERM */
}

char LICENSE[] SEC("license") = "GPL";
