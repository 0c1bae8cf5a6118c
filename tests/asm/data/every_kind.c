/* Every instruction kind clang 19 emits for BPF, for tests/asm/test_asm_clang_objects.py: compiled with
 * -mcpu=v2 (no alu32), v3 and v4, disassembled by llvm-objdump-19 and assembled back by pybpfguard.
 * Not a program to load: it only has to compile. */
typedef unsigned long long u64;
typedef long long s64;
typedef unsigned int u32;
typedef int s32;
typedef unsigned short u16;
typedef short s16;
typedef unsigned char u8;
typedef signed char s8;

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_loop)(u32 n, void *fn, void *ctx, u64 flags) = (void *)181;

struct {
	int type;
	int max_entries;
} counters __attribute__((section(".maps"), used));

/* signed division exists from ISA v4 (sdiv/smod); clang refuses it below v4 */
#if __BPF_CPU_VERSION__ >= 4
#define SDIV64(e) (sink64 = (u64)(e))
#define SDIV32(e) (sink32 = (u32)(e))
#else
#define SDIV64(e) ((void)0)
#define SDIV32(e) ((void)0)
#endif

u64 g64;
u32 g32;
volatile u64 sink64;
volatile u32 sink32;

static __attribute__((noinline)) u64 sub(u64 a, u64 b)
{
	return a * 3 + b;
}

static u64 (*volatile sub_ptr)(u64, u64) = sub;

static long cb(u32 i, void *ctx)
{
	sink64 += i;
	return 0;
}

__attribute__((section("socket"), used)) int every_kind(u64 *p)
{
	u64 a = p[0], b = p[1];
	s64 sa = (s64)p[2], sb = (s64)p[3];
	u32 x = (u32)p[4], y = (u32)p[5];
	s32 sx = (s32)p[6], sy = (s32)p[7];

	/* ALU64 and ALU32, register and immediate */
	sink64 = a + b; sink64 = a - b; sink64 = a * b; sink64 = a / b; sink64 = a % b;
	sink64 = a | b; sink64 = a & b; sink64 = a ^ b; sink64 = a << (b & 63); sink64 = a >> (b & 63);
	sink64 = (u64)(sa >> (sb & 63)); SDIV64(sa / sb); SDIV64(sa % sb); sink64 = -a;
	sink64 = a + 7; sink64 = a * 9; sink64 = a / 10; sink64 = a % 11; sink64 = a | 12; sink64 = a & 0xf0;
	sink64 = a ^ 0x55; sink64 = a << 3; sink64 = a >> 5; sink64 = (u64)(sa >> 7); SDIV64(sa / 13);
	SDIV64(sa % 14);
	sink32 = x + y; sink32 = x - y; sink32 = x * y; sink32 = x / y; sink32 = x % y; sink32 = x | y;
	sink32 = x & y; sink32 = x ^ y; sink32 = x << (y & 31); sink32 = x >> (y & 31);
	sink32 = (u32)(sx >> (sy & 31)); SDIV32(sx / sy); SDIV32(sx % sy); sink32 = -x;
	sink32 = x + 7; sink32 = x * 9; sink32 = x / 10; sink32 = x % 11; sink32 = x | 12; sink32 = x & 0xf0;
	sink32 = x ^ 0x55; sink32 = x << 3; sink32 = x >> 5; sink32 = (u32)(sx >> 7); SDIV32(sx / 13);
	SDIV32(sx % 14);
	/* constants: 32-bit and ld_imm64 */
	sink64 = 0x123456789abcdef0ULL; sink64 = -1; sink32 = 0xdeadbeef;
	/* sign extension (movsx) */
	sink64 = (s64)(s8)a; sink64 = (s64)(s16)a; sink64 = (s64)(s32)a;
	sink32 = (u32)(s32)(s8)x; sink32 = (u32)(s32)(s16)x;
	/* byte swaps */
	sink64 = __builtin_bswap64(a); sink32 = __builtin_bswap32(x); sink32 = __builtin_bswap16((u16)x);
	/* loads and stores of every size, sign-extending loads */
	sink64 = *(volatile u8 *)(p + 8); sink64 = *(volatile u16 *)(p + 8); sink64 = *(volatile u32 *)(p + 8);
	sink64 = (u64) * (volatile s8 *)(p + 9); sink64 = (u64) * (volatile s16 *)(p + 9);
	sink64 = (u64) * (volatile s32 *)(p + 9);
	*(volatile u8 *)(p + 10) = (u8)a; *(volatile u16 *)(p + 10) = (u16)a; *(volatile u32 *)(p + 10) = (u32)a;
	*(volatile u8 *)(p + 11) = 1; *(volatile u16 *)(p + 11) = 2; *(volatile u32 *)(p + 11) = 3;
	*(volatile u64 *)(p + 11) = 4;
	/* atomics, 64-bit and 32-bit, with and without fetch */
	__sync_fetch_and_add(&g64, a); __sync_fetch_and_and(&g64, a); __sync_fetch_and_or(&g64, a);
	__sync_fetch_and_xor(&g64, a);
	__sync_fetch_and_add(&g32, x);
	sink64 = __sync_fetch_and_add(&g64, b); sink64 = __sync_fetch_and_and(&g64, b);
	sink64 = __sync_fetch_and_or(&g64, b); sink64 = __sync_fetch_and_xor(&g64, b);
	sink64 = __sync_lock_test_and_set(&g64, a); sink64 = __sync_val_compare_and_swap(&g64, a, b);
#if __BPF_CPU_VERSION__ >= 3
	/* the other 32-bit atomics exist from ISA v3 (with alu32) */
	__sync_fetch_and_and(&g32, x); __sync_fetch_and_or(&g32, x); __sync_fetch_and_xor(&g32, x);
	sink32 = __sync_fetch_and_add(&g32, y); sink32 = __sync_fetch_and_and(&g32, y);
	sink32 = __sync_fetch_and_or(&g32, y); sink32 = __sync_fetch_and_xor(&g32, y);
	sink32 = __sync_lock_test_and_set(&g32, x); sink32 = __sync_val_compare_and_swap(&g32, x, y);
#endif
	/* jumps: every condition, 64 and 32 bits, register and immediate */
	if (a == b) sink64 = 1; if (a != b) sink64 = 2; if (a > b) sink64 = 3; if (a >= b) sink64 = 4;
	if (a < b) sink64 = 5; if (a <= b) sink64 = 6; if (sa > sb) sink64 = 7; if (sa >= sb) sink64 = 8;
	if (sa < sb) sink64 = 9; if (sa <= sb) sink64 = 10; if (a & b) sink64 = 11;
	if (a == 21) sink64 = 1; if (a != 22) sink64 = 2; if (a > 23) sink64 = 3; if (a >= 24) sink64 = 4;
	if (a < 25) sink64 = 5; if (a <= 26) sink64 = 6; if (sa > -27) sink64 = 7; if (sa >= -28) sink64 = 8;
	if (sa < -29) sink64 = 9; if (sa <= -30) sink64 = 10; if (a & 0x40) sink64 = 11;
	if (x == y) sink32 = 1; if (x != y) sink32 = 2; if (x > y) sink32 = 3; if (x >= y) sink32 = 4;
	if (x < y) sink32 = 5; if (x <= y) sink32 = 6; if (sx > sy) sink32 = 7; if (sx >= sy) sink32 = 8;
	if (sx < sy) sink32 = 9; if (sx <= sy) sink32 = 10; if (x & y) sink32 = 11;
	if (x == 21) sink32 = 1; if (x != 22) sink32 = 2; if (x > 23) sink32 = 3; if (x >= 24) sink32 = 4;
	if (x < 25) sink32 = 5; if (x <= 26) sink32 = 6; if (sx > -27) sink32 = 7; if (sx >= -28) sink32 = 8;
	if (sx < -29) sink32 = 9; if (sx <= -30) sink32 = 10; if (x & 0x40) sink32 = 11;
	/* calls: helper, bpf-to-bpf, a callback's address (ld_imm64 of a function), a map reference */
	sink64 = sub(a, b);
	bpf_loop(4, cb, 0, 0);
	{
		int key = 0;
		if (!bpf_map_lookup_elem(&counters, &key))
			return 1;
	}
	{
		/* a loop the compiler keeps (may_goto where clang emits it) */
		u64 s = 0;
		for (u32 i = 0; i < (x & 0xff); i++)
			s += p[i & 7];
		sink64 = s;
	}
#if __BPF_CPU_VERSION__ >= 4
	/* kinds clang 19 does not emit from this C: a long jump, the loop-budget jump, a subtraction of a
	 * constant (clang adds its negation), mod by a register (clang derives it from the division), and
	 * every jump condition in both operand kinds (clang inverts and canonicalizes conditions) */
	asm volatile("gotol +0\n"
	    "may_goto +0\n"
	    "r1 -= 3\n"
	    "w1 -= 3\n"
	    "r1 %%= r2\n"
	    "w1 %%= w2\n"
	    "r1 s%%= r2\n"
	    "w1 s%%= w2\n"
	    "if r1 == r2 goto +0\n"
	    "if r1 == 5 goto +0\n"
	    "if r1 != r2 goto +0\n"
	    "if r1 != 5 goto +0\n"
	    "if r1 > r2 goto +0\n"
	    "if r1 > 5 goto +0\n"
	    "if r1 >= r2 goto +0\n"
	    "if r1 >= 5 goto +0\n"
	    "if r1 < r2 goto +0\n"
	    "if r1 < 5 goto +0\n"
	    "if r1 <= r2 goto +0\n"
	    "if r1 <= 5 goto +0\n"
	    "if r1 s> r2 goto +0\n"
	    "if r1 s> 5 goto +0\n"
	    "if r1 s>= r2 goto +0\n"
	    "if r1 s>= 5 goto +0\n"
	    "if r1 s< r2 goto +0\n"
	    "if r1 s< 5 goto +0\n"
	    "if r1 s<= r2 goto +0\n"
	    "if r1 s<= 5 goto +0\n"
	    "if r1 & r2 goto +0\n"
	    "if r1 & 5 goto +0\n"
	    "if w1 == w2 goto +0\n"
	    "if w1 == 5 goto +0\n"
	    "if w1 != w2 goto +0\n"
	    "if w1 != 5 goto +0\n"
	    "if w1 > w2 goto +0\n"
	    "if w1 > 5 goto +0\n"
	    "if w1 >= w2 goto +0\n"
	    "if w1 >= 5 goto +0\n"
	    "if w1 < w2 goto +0\n"
	    "if w1 < 5 goto +0\n"
	    "if w1 <= w2 goto +0\n"
	    "if w1 <= 5 goto +0\n"
	    "if w1 s> w2 goto +0\n"
	    "if w1 s> 5 goto +0\n"
	    "if w1 s>= w2 goto +0\n"
	    "if w1 s>= 5 goto +0\n"
	    "if w1 s< w2 goto +0\n"
	    "if w1 s< 5 goto +0\n"
	    "if w1 s<= w2 goto +0\n"
	    "if w1 s<= 5 goto +0\n"
	    "if w1 & w2 goto +0\n"
	    "if w1 & 5 goto +0\n"
	    ::: "r1", "r2", "memory");
#endif
	/* an indirect call (callx), through a pointer the compiler cannot fold */
	sink64 = ((u64 (*volatile)(u64, u64))sub_ptr)(a, b);
	return 0;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
