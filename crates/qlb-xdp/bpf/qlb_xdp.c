// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * qlb's kernel fast path: an XDP program that routes the QUIC datagrams sent to the load
 * balancer's VIPs by the server ID their QUIC-LB connection ID encodes, and forwards each,
 * unchanged, inside Generic UDP Encapsulation to its backend.
 *
 * It decides exactly as qlb-router's Router does, against tables the daemon builds with the
 * same code (crates/qlb-xdp/src/tables.rs writes them), and writes the same GUE packet as
 * qlb-gue: the differential test (crates/qlb-xdp/tests/differential.rs) holds the two to the
 * same decision and the same octets. What it cannot decide goes up to the userspace data
 * plane (XDP_PASS), which handles it as in gue mode: IP options and fragments, IPv6
 * extension headers, UDP without a checksum, long-header DCIDs longer than 20 octets, Initials
 * when the daemon answers them with Retries, backends it has no route or neighbour for yet.
 *
 * Dual-licensed so that the kernel lets it call bpf_fib_lookup, a GPL-only helper.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* From <sys/socket.h>, which a BPF program cannot include. */
#define AF_INET 2
#define AF_INET6 10

#include "aes_tables.h"
#include "layout.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* ---- Maps: written by the daemon, read per packet ---------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct qlb_settings);
} qlb_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS);
	__type(key, __u32);
	__type(value, struct qlb_pool);
} qlb_pools SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_CODEPOINTS);
	__type(key, __u32);
	__type(value, struct qlb_config);
} qlb_configs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_SERVER_IDS);
	__type(key, struct qlb_server_id_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} qlb_server_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct qlb_backend);
} qlb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QLB_GENERATIONS * QLB_MAX_BACKENDS);
	__type(key, struct qlb_backend_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} qlb_backend_keys SEC(".maps");

/* Sized by the daemon at load: two Maglev tables of the pool's size. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} qlb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, QLB_MAX_VIPS);
	__type(key, struct qlb_vip_key);
	__type(value, __u32);
} qlb_vips SEC(".maps");

/* The flow tables of qlb-router, bounded and least recently used first out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct qlb_dcid_key);
	__type(value, struct qlb_flow);
} qlb_dcid_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct qlb_tuple_key);
	__type(value, struct qlb_flow);
} qlb_tuple_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, QLB_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} qlb_counters SEC(".maps");

/* ---- Per-packet state ---------------------------------------------------------------------- */

/* The most of a QUIC header read: first octet, version, DCID length, a 20-octet DCID and the
 * SCID length; a short header's first octet and DCID fit too. */
#define HEADER_COPY 32

struct quic {
	__u8 bytes[HEADER_COPY]; /* the datagram's first octets, zero past its end */
	__u32 len;               /* the datagram's length */
	__u32 dcid_len;
	int has_dcid; /* the DCID's extent is known */
	int long_header;
	__u32 packet_type;
};

enum qlb_packet_type {
	PT_VERSION_NEGOTIATION,
	PT_INITIAL,
	PT_ZERO_RTT,
	PT_HANDSHAKE,
	PT_RETRY,
	PT_UNKNOWN_VERSION,
};

static __always_inline __u32 packet_type_of(__u32 version, __u8 first)
{
	__u32 bits = (first >> 4) & 3;
	if (version == 0)
		return PT_VERSION_NEGOTIATION;
	if (version == 1)
		return bits == 0 ? PT_INITIAL : bits == 1 ? PT_ZERO_RTT : bits == 2 ? PT_HANDSHAKE : PT_RETRY;
	if (version == 0x6b3343cf)
		return bits == 1 ? PT_INITIAL : bits == 2 ? PT_ZERO_RTT : bits == 3 ? PT_HANDSHAKE : PT_RETRY;
	return PT_UNKNOWN_VERSION;
}

/* The datagram's addresses and what its encapsulation keeps. */
struct client {
	__u8 addr[16]; /* IPv4 as IPv4-mapped IPv6 */
	__u16 port;    /* host order */
	__u8 v4;       /* an IPv4 datagram */
	__u8 ecn;      /* its ECN codepoint */
	__u32 vip;     /* the listener's index */
	__u32 udp_len; /* its UDP header and payload */
};

/* What a packet's decision works on, off the 512-octet stack: one per CPU, as Katran keeps its
 * scratch. */
struct scratch {
	struct quic q;
	struct client client;
	struct qlb_vip_key vip;
	__u8 dcid[32];  /* the DCID, zero past its length */
	__u8 block[32]; /* the octets after its first, zero past the plaintext length */
	__u8 left[16];  /* the four-pass halves and round output */
	__u8 right[16];
	__u8 f[16];
	struct qlb_server_id_key sid_key;
	__u8 key[24]; /* the fallback key */
	struct qlb_dcid_key dcid_key;
	struct qlb_tuple_key tuple_key;
	struct qlb_flow flow;
	struct qlb_backend_key backend_key;
	struct bpf_fib_lookup fib;
	__u32 route;     /* the counter of the route taken */
	__u32 codepoint; /* of a CID-routed packet */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} qlb_scratch SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&qlb_counters, &counter);
	if (value)
		*value += 1;
}

/* ---- Branchless selection -------------------------------------------------------------- */

/* 0xff when i < n (both below 2^31), else 0: loops over a variable length stay one path for
 * the verifier instead of doubling at every octet. */
static __always_inline __u8 below(__u32 i, __u32 n)
{
	__s32 difference = i - n;
	/* Opaque to clang, which would see a comparison and make it a branch again. */
	barrier_var(difference);
	return (__u8)(difference >> 31);
}

static __always_inline __u64 below64(__u32 i, __u32 n)
{
	__s32 difference = i - n;
	barrier_var(difference);
	return (__u64)(__s64)(difference >> 31);
}

/* ---- Hashes: qlb-router's hash.rs --------------------------------------------------------- */

#define FNV_OFFSET_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x00000100000001b3ULL
#define DOMAIN_KEY 0x6b65792020202020ULL

static __always_inline __u64 rotl64(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static __always_inline __u64 fmix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

static __always_inline __u64 load_le64(const __u8 *p)
{
	__u64 v = 0;
#pragma unroll
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = rotl64(v1, 13) ^ v0;                                                          \
		v0 = rotl64(v0, 32);                                                               \
		v2 += v3;                                                                          \
		v3 = rotl64(v3, 16) ^ v2;                                                          \
		v0 += v3;                                                                          \
		v3 = rotl64(v3, 21) ^ v0;                                                          \
		v2 += v1;                                                                          \
		v1 = rotl64(v1, 17) ^ v2;                                                          \
		v2 = rotl64(v2, 32);                                                               \
	} while (0)

/*
 * The fallback hash of `len` (at most 24) octets in `key`, zero past `len`: SipHash-1-3 under
 * the pool's key, or without one FNV-1a then fmix64 in the key domain.
 */
static __noinline __u64 key_hash(const struct qlb_pool *pool, const __u8 key[24], __u32 len)
{
	if (!(pool->flags & QLB_POOL_HASH_KEYED)) {
		__u64 h = FNV_OFFSET_BASIS;
#pragma unroll
		for (__u32 i = 0; i < 24; i++) {
			__u64 take = below64(i, len);
			h = (((h ^ key[i]) * FNV_PRIME) & take) | (h & ~take);
		}
		return fmix64(h ^ DOMAIN_KEY);
	}
	__u64 v0 = pool->k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = pool->k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = pool->k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = pool->k1 ^ 0x7465646279746573ULL;
#pragma unroll
	for (__u32 w = 0; w < 3; w++) {
		if (w * 8 + 8 <= len) {
			__u64 m = load_le64(key + w * 8);
			v3 ^= m;
			SIP_ROUND(v0, v1, v2, v3);
			v0 ^= m;
		}
	}
	/* The last word: the octets left (zero-padded) and the length in the top octet. */
	__u32 whole = len & ~7U;
	__u64 last = whole == 0 ? load_le64(key) : whole == 8 ? load_le64(key + 8) : load_le64(key + 16);
	last |= (__u64)(len & 0xff) << 56;
	v3 ^= last;
	SIP_ROUND(v0, v1, v2, v3);
	v0 ^= last;
	v2 ^= 0xff;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The high 64 bits of a * b: multiply-shift onto a table without a division. */
static __always_inline __u64 mulhi64(__u64 a, __u64 b)
{
	__u64 a_lo = (__u32)a, a_hi = a >> 32, b_lo = (__u32)b, b_hi = b >> 32;
	__u64 p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
	__u64 mid = (p0 >> 32) + (__u32)p1 + (__u32)p2;
	return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
}

/* ---- AES-128, one block, with the round keys the daemon expanded ----------------------- */

/* `b` from 1 to 31: a shift by 32 is undefined, and in BPF is not the identity. */
static __always_inline __u32 ror32(__u32 x, int b)
{
	return (x >> b) | (x << (32 - b));
}

/* The T-tables: the first, and the others as its byte rotations by `rot` (0, 8, 16, 24). */
static __always_inline __u32 te(__u32 i, int rot)
{
	__u32 entry = aes_te0[i & 0xff];
	return rot ? ror32(entry, rot) : entry;
}

static __always_inline __u32 td(__u32 i, int rot)
{
	__u32 entry = aes_td0[i & 0xff];
	return rot ? ror32(entry, rot) : entry;
}

static __always_inline __u32 load_be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

static __always_inline void store_be32(__u8 *p, __u32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Encrypts `block` in place but for its first word, which it returns for the caller to store:
 * a result clang cannot drop keeps the call a call (its own stack frame, verified once). */
static __noinline __u32 aes_encrypt(const __u32 *rk, __u8 block[16])
{
	__u32 s0 = load_be32(block) ^ rk[0], s1 = load_be32(block + 4) ^ rk[1];
	__u32 s2 = load_be32(block + 8) ^ rk[2], s3 = load_be32(block + 12) ^ rk[3];
	__u32 t0, t1, t2, t3;
#pragma unroll
	for (int r = 1; r < 10; r++) {
		t0 = te(s0 >> 24, 0) ^ te(s1 >> 16, 8) ^ te(s2 >> 8, 16) ^ te(s3, 24) ^ rk[4 * r];
		t1 = te(s1 >> 24, 0) ^ te(s2 >> 16, 8) ^ te(s3 >> 8, 16) ^ te(s0, 24) ^ rk[4 * r + 1];
		t2 = te(s2 >> 24, 0) ^ te(s3 >> 16, 8) ^ te(s0 >> 8, 16) ^ te(s1, 24) ^ rk[4 * r + 2];
		t3 = te(s3 >> 24, 0) ^ te(s0 >> 16, 8) ^ te(s1 >> 8, 16) ^ te(s2, 24) ^ rk[4 * r + 3];
		s0 = t0;
		s1 = t1;
		s2 = t2;
		s3 = t3;
	}
#define SB(x) ((__u32)aes_sbox[(x) & 0xff])
	t0 = (SB(s0 >> 24) << 24) ^ (SB(s1 >> 16) << 16) ^ (SB(s2 >> 8) << 8) ^ SB(s3) ^ rk[40];
	t1 = (SB(s1 >> 24) << 24) ^ (SB(s2 >> 16) << 16) ^ (SB(s3 >> 8) << 8) ^ SB(s0) ^ rk[41];
	t2 = (SB(s2 >> 24) << 24) ^ (SB(s3 >> 16) << 16) ^ (SB(s0 >> 8) << 8) ^ SB(s1) ^ rk[42];
	t3 = (SB(s3 >> 24) << 24) ^ (SB(s0 >> 16) << 16) ^ (SB(s1 >> 8) << 8) ^ SB(s2) ^ rk[43];
#undef SB
	store_be32(block + 4, t1);
	store_be32(block + 8, t2);
	store_be32(block + 12, t3);
	return t0;
}

/* The equivalent inverse cipher (FIPS 197 section 5.3.5) under the decryption schedule `rk`;
 * returns the first word as aes_encrypt does. */
static __noinline __u32 aes_decrypt(const __u32 *rk, __u8 block[16])
{
	__u32 s0 = load_be32(block) ^ rk[0], s1 = load_be32(block + 4) ^ rk[1];
	__u32 s2 = load_be32(block + 8) ^ rk[2], s3 = load_be32(block + 12) ^ rk[3];
	__u32 t0, t1, t2, t3;
#pragma unroll
	for (int r = 1; r < 10; r++) {
		t0 = td(s0 >> 24, 0) ^ td(s3 >> 16, 8) ^ td(s2 >> 8, 16) ^ td(s1, 24) ^ rk[4 * r];
		t1 = td(s1 >> 24, 0) ^ td(s0 >> 16, 8) ^ td(s3 >> 8, 16) ^ td(s2, 24) ^ rk[4 * r + 1];
		t2 = td(s2 >> 24, 0) ^ td(s1 >> 16, 8) ^ td(s0 >> 8, 16) ^ td(s3, 24) ^ rk[4 * r + 2];
		t3 = td(s3 >> 24, 0) ^ td(s2 >> 16, 8) ^ td(s1 >> 8, 16) ^ td(s0, 24) ^ rk[4 * r + 3];
		s0 = t0;
		s1 = t1;
		s2 = t2;
		s3 = t3;
	}
#define IS(x) ((__u32)aes_inv_sbox[(x) & 0xff])
	t0 = (IS(s0 >> 24) << 24) ^ (IS(s3 >> 16) << 16) ^ (IS(s2 >> 8) << 8) ^ IS(s1) ^ rk[40];
	t1 = (IS(s1 >> 24) << 24) ^ (IS(s0 >> 16) << 16) ^ (IS(s3 >> 8) << 8) ^ IS(s2) ^ rk[41];
	t2 = (IS(s2 >> 24) << 24) ^ (IS(s1 >> 16) << 16) ^ (IS(s0 >> 8) << 8) ^ IS(s3) ^ rk[42];
	t3 = (IS(s3 >> 24) << 24) ^ (IS(s2 >> 16) << 16) ^ (IS(s1 >> 8) << 8) ^ IS(s0) ^ rk[43];
#undef IS
	store_be32(block + 4, t1);
	store_be32(block + 8, t2);
	store_be32(block + 12, t3);
	return t0;
}

/* ---- QUIC-LB decoding: quic-lb's cipher.rs ------------------------------------------------ */

/* One Feistel round function of the four-pass algorithm (draft section 5.4.2). */
static __always_inline void four_pass_round(const struct qlb_config *config, const __u8 half[16],
					    __u32 pass, __u32 half_len, __u8 out[16])
{
#pragma unroll
	for (__u32 i = 0; i < 16; i++)
		out[i] = half[i];
	out[14] |= config->plaintext_len;
	out[15] |= pass;
	store_be32(out, aes_encrypt(config->enc_round_keys, out));
#pragma unroll
	for (__u32 i = 0; i < 16; i++)
		out[i] &= below(i, half_len);
}

/*
 * The server ID of a DCID whose `plaintext_len` octets after the first are `block` (zero
 * past them), into `sid` (its first `server_id_len` octets; zero after); returns its length.
 */
static __noinline int server_id_of(const struct qlb_config *config, struct scratch *sc)
{
	const __u8 *block = sc->block;
	__u8 *sid = sc->sid_key.server_id;
	__u32 len = config->plaintext_len & 31;
	if (config->mode == QLB_MODE_PLAINTEXT) {
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			sid[i] = block[i];
	} else if (config->mode == QLB_MODE_SINGLE_PASS) {
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			sid[i] = block[i];
		store_be32(sid, aes_decrypt(config->dec_round_keys, sid));
	} else {
		__u32 half_len = (len + 1) / 2;
		__u32 at = len - half_len;
		int odd = len & 1;
		__u8 *left = sc->left, *right = sc->right, *f = sc->f;
#pragma unroll
		for (__u32 i = 0; i < 16; i++) {
			left[i] = block[i] & below(i, half_len);
			right[i] = block[(i + at) & 31] & below(i, half_len);
		}
		if (odd) {
			left[(half_len - 1) & 15] &= 0xf0;
			right[0] &= 0x0f;
		}
		/* Decryption: passes 4, 3, 2, and 1 only when the server ID reaches into the right
		 * half. */
		four_pass_round(config, right, 4, half_len, f);
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			left[i] ^= f[i];
		if (odd)
			left[(half_len - 1) & 15] &= 0xf0;
		four_pass_round(config, left, 3, half_len, f);
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			right[i] ^= f[i];
		if (odd)
			right[0] &= 0x0f;
		four_pass_round(config, right, 2, half_len, f);
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			left[i] ^= f[i];
		if (odd)
			left[(half_len - 1) & 15] &= 0xf0;
		if (config->server_id_len > len / 2) {
			four_pass_round(config, left, 1, half_len, f);
#pragma unroll
			for (__u32 i = 0; i < 16; i++)
				right[i] ^= f[i];
			if (odd)
				right[0] &= 0x0f;
		}
		/* The halves joined again: the right one starts at `at`. */
#pragma unroll
		for (__u32 i = 0; i < 16; i++)
			sid[i] = left[i] | (right[(i - at) & 15] & ~below(i, at));
	}
#pragma unroll
	for (__u32 i = 0; i < 16; i++)
		sid[i] &= below(i, config->server_id_len);
	return config->server_id_len;
}

/* ---- The decision ------------------------------------------------------------------------ */

/*
 * Header::parse and Router's refusal: a counter index to drop with, QLB_C_PASS_LONG_DCID to
 * pass up, or 0 when the header routes.
 */
static __noinline __u32 parse(struct quic *q, __u32 generation)
{
	if (q->len == 0)
		return QLB_C_DROP_EMPTY;
	__u8 first = q->bytes[0];
	if (first & 0x80) {
		q->long_header = 1;
		if (q->len < 6)
			return QLB_C_DROP_TRUNCATED;
		__u32 version = load_be32(q->bytes + 1);
		q->packet_type = packet_type_of(version, first);
		__u32 max_cid = (q->packet_type == PT_VERSION_NEGOTIATION ||
				 q->packet_type == PT_UNKNOWN_VERSION)
					? 255
					: 20;
		__u32 dcid_len = q->bytes[5];
		if (dcid_len > max_cid)
			return QLB_C_DROP_CID_TOO_LONG;
		if (q->len < 6 + dcid_len)
			return QLB_C_DROP_TRUNCATED;
		if (dcid_len > 20)
			return QLB_C_PASS_LONG_DCID;
		q->dcid_len = dcid_len;
		q->has_dcid = 1;
		if (q->len < 7 + dcid_len)
			return QLB_C_DROP_TRUNCATED;
		__u32 scid_len = q->bytes[(6 + dcid_len) & (HEADER_COPY - 1)];
		if (scid_len > max_cid)
			return QLB_C_DROP_CID_TOO_LONG;
		if (q->len < 7 + dcid_len + scid_len)
			return QLB_C_DROP_TRUNCATED;
		switch (q->packet_type) {
		case PT_VERSION_NEGOTIATION:
			return QLB_C_DROP_VERSION_NEGOTIATION;
		case PT_RETRY:
			return QLB_C_DROP_RETRY;
		case PT_INITIAL:
			return q->len < 1200 ? QLB_C_DROP_INITIAL_TOO_SMALL : 0;
		case PT_ZERO_RTT:
		case PT_HANDSHAKE:
			return q->len < 8 + dcid_len + scid_len + 20 ? QLB_C_DROP_TOO_SHORT : 0;
		default:
			return 0;
		}
	}
	if (q->len < 2)
		return QLB_C_DROP_TRUNCATED;
	__u8 dcid_first = q->bytes[1];
	__u32 key = generation * QLB_CODEPOINTS + (dcid_first >> 5);
	struct qlb_config *config = bpf_map_lookup_elem(&qlb_configs, &key);
	__u32 dcid_len = 0;
	if (config && config->present) {
		dcid_len = config->cid_len;
		q->has_dcid = 1;
	} else if (dcid_first >> 5 == 7) {
		dcid_len = (dcid_first & 0x1f) + 1;
		q->has_dcid = dcid_len <= 20;
	}
	if (!q->has_dcid)
		dcid_len = 0;
	if (q->has_dcid && q->len < 1 + dcid_len)
		return QLB_C_DROP_TRUNCATED;
	q->dcid_len = dcid_len;
	return q->len < 1 + dcid_len + 20 ? QLB_C_DROP_TOO_SHORT : 0;
}

static __always_inline const __u8 *dcid_of(const struct quic *q)
{
	return q->long_header ? q->bytes + 6 : q->bytes + 1;
}

/* The backend at `index` of the generation, if it serves existing connections. */
static __always_inline struct qlb_backend *serving(__u32 generation, __u32 index)
{
	if (index >= QLB_MAX_BACKENDS)
		return 0;
	__u32 key = generation * QLB_MAX_BACKENDS + index;
	struct qlb_backend *backend = bpf_map_lookup_elem(&qlb_backends, &key);
	if (!backend || backend->state == QLB_STATE_ABSENT || backend->state == QLB_STATE_DOWN)
		return 0;
	return backend;
}

/* Pool::route_by_cid: the serving backend a routable DCID names, its codepoint in
 * sc->codepoint. */
static __noinline struct qlb_backend *route_by_cid(__u32 generation, struct scratch *sc)
{
	const struct quic *q = &sc->q;
	if (!q->has_dcid || q->dcid_len == 0)
		return 0;
	const __u8 *src = dcid_of(q);
#pragma unroll
	for (__u32 i = 0; i < 20; i++)
		sc->dcid[i] = src[i] & below(i, q->dcid_len);
	__u32 cp = sc->dcid[0] >> 5;
	__u32 key = generation * QLB_CODEPOINTS + cp;
	struct qlb_config *config = bpf_map_lookup_elem(&qlb_configs, &key);
	if (!config || !config->present || q->dcid_len < config->cid_len)
		return 0;
#pragma unroll
	for (__u32 i = 0; i < 19; i++)
		sc->block[i] = sc->dcid[i + 1] & below(i, config->plaintext_len);
	sc->sid_key.generation = generation;
	sc->sid_key.codepoint = cp;
	sc->sid_key.pad = 0;
	sc->sid_key.len = server_id_of(config, sc);
	__u32 *index = bpf_map_lookup_elem(&qlb_server_ids, &sc->sid_key);
	if (!index)
		return 0;
	sc->codepoint = cp;
	return serving(generation, *index);
}

/* A flow-table entry's backend, if it is in this generation's pool and serving, and the
 * entry has not lapsed. */
static __always_inline struct qlb_backend *remembered(struct qlb_flow *flow, __u32 generation,
						       __u64 now, __u64 idle_timeout,
						       struct scratch *sc)
{
	if (!flow || now - flow->last_used >= idle_timeout)
		return 0;
	sc->backend_key.key = flow->backend_key;
	sc->backend_key.generation = generation;
	sc->backend_key.pad = 0;
	__u32 *index = bpf_map_lookup_elem(&qlb_backend_keys, &sc->backend_key);
	if (!index)
		return 0;
	return serving(generation, *index);
}

/* Router::route_unroutable: the tables, then the Maglev fallback, the route taken in
 * sc->route; the outcome recorded in both tables. */
static __noinline struct qlb_backend *route_unroutable(__u32 generation,
							const struct qlb_settings *settings,
							struct scratch *sc)
{
	const struct quic *q = &sc->q;
	const struct client *client = &sc->client;
	__u64 now = bpf_ktime_get_ns();
	struct qlb_pool *pool = bpf_map_lookup_elem(&qlb_pools, &generation);
	if (!pool)
		return 0;
	struct qlb_dcid_key *dcid_key = &sc->dcid_key;
	__builtin_memset(dcid_key, 0, sizeof(*dcid_key));
	dcid_key->vip = client->vip;
	int has_dcid_key = q->has_dcid && q->dcid_len > 0;
	if (has_dcid_key) {
		const __u8 *src = dcid_of(q);
		dcid_key->len = q->dcid_len;
#pragma unroll
		for (__u32 i = 0; i < 20; i++)
			dcid_key->dcid[i] = src[i] & below(i, q->dcid_len);
	}
	struct qlb_tuple_key *tuple_key = &sc->tuple_key;
	__builtin_memset(tuple_key, 0, sizeof(*tuple_key));
	tuple_key->vip = client->vip;
	tuple_key->port = client->port;
	__builtin_memcpy(tuple_key->addr, client->addr, 16);
	int skips_tuple = q->long_header &&
			  (q->packet_type == PT_INITIAL || q->packet_type == PT_ZERO_RTT);

	struct qlb_backend *backend = 0;
	if (has_dcid_key) {
		backend = remembered(bpf_map_lookup_elem(&qlb_dcid_table, dcid_key), generation,
				     now, settings->idle_timeout_ns, sc);
		sc->route = QLB_C_DCID_TABLE;
	}
	if (!backend && !skips_tuple) {
		backend = remembered(bpf_map_lookup_elem(&qlb_tuple_table, tuple_key), generation,
				     now, settings->idle_timeout_ns, sc);
		sc->route = QLB_C_TUPLE_TABLE;
	}
	if (!backend) {
		/* The fallback key: a long header's DCID, else the client address and port. */
		__u32 key_len;
		__builtin_memset(sc->key, 0, sizeof(sc->key));
		if (q->long_header && q->dcid_len > 0) {
			__builtin_memcpy(sc->key, dcid_key->dcid, 20);
			key_len = q->dcid_len;
		} else {
			__builtin_memcpy(sc->key, client->addr, 16);
			sc->key[16] = client->port >> 8;
			sc->key[17] = client->port;
			key_len = 18;
		}
		__u64 hash = key_hash(pool, sc->key, key_len);
		if (pool->maglev_size == 0)
			return 0;
		__u32 slot = pool->maglev_base + (__u32)mulhi64(hash, pool->maglev_size);
		__u32 *index = bpf_map_lookup_elem(&qlb_maglev, &slot);
		if (!index || *index >= QLB_MAX_BACKENDS)
			return 0;
		__u32 at = generation * QLB_MAX_BACKENDS + *index;
		backend = bpf_map_lookup_elem(&qlb_backends, &at);
		if (!backend || backend->state == QLB_STATE_ABSENT)
			return 0;
		sc->route = QLB_C_FALLBACK;
	}
	sc->flow.backend_key = backend->key;
	sc->flow.last_used = now;
	if (has_dcid_key)
		bpf_map_update_elem(&qlb_dcid_table, dcid_key, &sc->flow, BPF_ANY);
	bpf_map_update_elem(&qlb_tuple_table, tuple_key, &sc->flow, BPF_ANY);
	return backend;
}

/* ---- Encapsulation: qlb-gue's encap.rs, with the outer headers the kernel would write ---- */

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* The ones' complement sum of `n` (even, constant) octets as big-endian 16-bit words. */
static __always_inline __u32 sum_words(const __u8 *p, __u32 n)
{
	__u32 sum = 0;
#pragma unroll
	for (__u32 i = 0; i + 1 < n; i += 2)
		sum += ((__u32)p[i] << 8) | p[i + 1];
	return sum;
}

/* GUE's source port for a client: qlb-lb's port_index over the GUE ports. */
static __always_inline __u16 gue_source_port(const struct client *client,
					     const struct qlb_settings *settings, int v4)
{
	__u64 address;
	if (v4) {
		address = load_be32(client->addr + 12);
	} else {
		__u64 hi = 0, lo = 0;
#pragma unroll
		for (int i = 0; i < 8; i++) {
			hi = (hi << 8) | client->addr[i];
			lo = (lo << 8) | client->addr[8 + i];
		}
		address = hi ^ lo;
	}
	__u64 x = rotl64(address, 16) ^ client->port;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	__u32 ports = settings->gue_ports ? settings->gue_ports : 1;
	return settings->gue_first_port + (__u16)mulhi64(x, ports);
}

#define ETH_LEN 14
#define GUE_LEN 4
#define UDP_LEN 8

/*
 * Writes the headers of the encapsulated packet, the datagram's IP header (at `data` +
 * ETH_LEN + the room made before it) rewritten as the inner one. The families are constants
 * at each call, so that every offset is one.
 */
static __always_inline int write_headers(struct xdp_md *ctx, const int outer_v4, const int inner_v4,
					 const struct bpf_fib_lookup *fib,
					 const struct qlb_backend *backend,
					 const struct qlb_settings *settings, __u16 outer_sport,
					 __u8 ecn, __u32 udp_len)
{
	const __u32 outer_ip_len = outer_v4 ? 20 : 40;
	const __u32 inner_ip_len = inner_v4 ? 20 : 40;
	const __u32 inner_at = ETH_LEN + outer_ip_len + UDP_LEN + GUE_LEN;
	__u32 inner_total = inner_ip_len + udp_len;
	__u32 outer_udp_len = UDP_LEN + GUE_LEN + inner_total;

	if (bpf_xdp_adjust_head(ctx, -(int)(outer_ip_len + UDP_LEN + GUE_LEN)))
		return QLB_C_PASS_NO_ROOM;
	__u8 *p = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if ((void *)(p + inner_at + inner_ip_len + UDP_LEN) > data_end)
		return QLB_C_PASS_NO_ROOM;

	struct ethhdr *eth = (void *)p;
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
	eth->h_proto = bpf_htons(outer_v4 ? ETH_P_IP : ETH_P_IPV6);

	/* The inner IP header, canonical as qlb-gue writes it; its addresses are the client's
	 * and the VIP, where the client put them. */
	__u8 *ip = p + inner_at;
	__u32 inner_sum, pseudo_inner;
	if (inner_v4) {
		ip[0] = 0x45;
		ip[1] = ecn;
		ip[2] = inner_total >> 8;
		ip[3] = inner_total;
		ip[4] = 0;
		ip[5] = 0;
		ip[6] = 0x40; /* identification 0, don't fragment (RFC 6864 section 4.1) */
		ip[7] = 0;
		ip[8] = 64;
		ip[9] = IPPROTO_UDP;
		ip[10] = 0;
		ip[11] = 0;
		__u16 check = ~csum_fold(sum_words(ip, 20));
		ip[10] = check >> 8;
		ip[11] = check;
		inner_sum = sum_words(ip, 20);
		pseudo_inner = sum_words(ip + 12, 8) + IPPROTO_UDP + udp_len;
	} else {
		ip[0] = 0x60;
		ip[1] = ecn << 4;
		ip[2] = 0;
		ip[3] = 0;
		ip[4] = udp_len >> 8;
		ip[5] = udp_len;
		ip[6] = IPPROTO_UDP;
		ip[7] = 64;
		inner_sum = sum_words(ip, 40);
		pseudo_inner = sum_words(ip + 8, 32) + IPPROTO_UDP + udp_len;
	}

	/* GUE: variant 0, a data message, no optional fields, the inner protocol. */
	__u8 *gue = p + ETH_LEN + outer_ip_len + UDP_LEN;
	gue[0] = 0;
	gue[1] = inner_v4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	gue[2] = 0;
	gue[3] = 0;

	/* The outer IP header, as the GUE socket's would be: no options, don't fragment, TTL
	 * 64, the datagram's ECN codepoint. */
	__u8 *oip = p + ETH_LEN;
	__u32 pseudo_outer;
	if (outer_v4) {
		__u32 total = 20 + outer_udp_len;
		oip[0] = 0x45;
		oip[1] = ecn;
		oip[2] = total >> 8;
		oip[3] = total;
		oip[4] = 0;
		oip[5] = 0;
		oip[6] = 0x40;
		oip[7] = 0;
		oip[8] = 64;
		oip[9] = IPPROTO_UDP;
		oip[10] = 0;
		oip[11] = 0;
		__builtin_memcpy(oip + 12, settings->gue_source + 12, 4);
		__builtin_memcpy(oip + 16, backend->addr + 12, 4);
		__u16 check = ~csum_fold(sum_words(oip, 20));
		oip[10] = check >> 8;
		oip[11] = check;
		pseudo_outer = sum_words(oip + 12, 8);
	} else {
		oip[0] = 0x60;
		oip[1] = ecn << 4;
		oip[2] = 0;
		oip[3] = 0;
		oip[4] = outer_udp_len >> 8;
		oip[5] = outer_udp_len;
		oip[6] = IPPROTO_UDP;
		oip[7] = 64;
		__builtin_memcpy(oip + 8, settings->gue_source, 16);
		__builtin_memcpy(oip + 24, backend->addr, 16);
		pseudo_outer = sum_words(oip + 8, 32);
	}
	pseudo_outer += IPPROTO_UDP + outer_udp_len;

	/* The outer UDP header. Its checksum needs no pass over the payload: the inner UDP
	 * checksum is valid, so the inner UDP header and payload sum to the complement of the
	 * inner pseudo-header (local checksum offload, RFC 7605's trick in Linux's
	 * udp_set_csum). */
	__u8 *udp = p + ETH_LEN + outer_ip_len;
	udp[0] = outer_sport >> 8;
	udp[1] = outer_sport;
	udp[2] = backend->port >> 8;
	udp[3] = backend->port;
	udp[4] = outer_udp_len >> 8;
	udp[5] = outer_udp_len;
	__u32 sum = pseudo_outer + sum_words(udp, 6) + sum_words(gue, 4) + inner_sum +
		    (__u16)~csum_fold(pseudo_inner);
	__u16 check = ~csum_fold(sum);
	if (check == 0)
		check = 0xffff;
	udp[6] = check >> 8;
	udp[7] = check;
	return 0;
}

/*
 * Wraps the client's datagram for `backend` and finds the way out: 0 when it is ready to go
 * from sc->fib.ifindex (the ingress interface: XDP_TX), else the counter to pass it up with.
 */
static __noinline int encapsulate(struct xdp_md *ctx, const struct qlb_backend *backend,
				   const struct qlb_settings *settings, struct scratch *sc)
{
	const struct client *client = &sc->client;
	int inner_v4 = client->v4;
	__u8 ecn = client->ecn;
	__u32 udp_len = client->udp_len;
	int outer_v4 = backend->family == QLB_FAMILY_V4;
	if (backend->family != settings->gue_family)
		return QLB_C_PASS_FAMILY;
	__u32 outer_ip_len = outer_v4 ? 20 : 40;
	__u32 inner_ip_len = inner_v4 ? 20 : 40;
	__u32 outer_total = outer_ip_len + UDP_LEN + GUE_LEN + inner_ip_len + udp_len;
	if (outer_total > 0xffff)
		return QLB_C_PASS_TOO_BIG;

	struct bpf_fib_lookup *fib = &sc->fib;
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->l4_protocol = IPPROTO_UDP;
	fib->dport = bpf_htons(backend->port);
	fib->tot_len = outer_total;
	fib->ifindex = ctx->ingress_ifindex;
	if (outer_v4) {
		fib->family = AF_INET;
		__builtin_memcpy(&fib->ipv4_src, settings->gue_source + 12, 4);
		__builtin_memcpy(&fib->ipv4_dst, backend->addr + 12, 4);
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, settings->gue_source, 16);
		__builtin_memcpy(fib->ipv6_dst, backend->addr, 16);
	}
	long found = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (found == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return QLB_C_PASS_TOO_BIG;
	if (found == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return QLB_C_PASS_FORWARDING_OFF;
	if (found != BPF_FIB_LKUP_RET_SUCCESS)
		return QLB_C_PASS_NO_ROUTE;

	__u16 sport = gue_source_port(client, settings, inner_v4);
	if (outer_v4 && inner_v4)
		return write_headers(ctx, 1, 1, fib, backend, settings, sport, ecn, udp_len);
	if (outer_v4)
		return write_headers(ctx, 1, 0, fib, backend, settings, sport, ecn, udp_len);
	if (inner_v4)
		return write_headers(ctx, 0, 1, fib, backend, settings, sport, ecn, udp_len);
	return write_headers(ctx, 0, 0, fib, backend, settings, sport, ecn, udp_len);
}

/* ---- The program -------------------------------------------------------------------------- */

static __always_inline int pass(__u32 counter)
{
	count(counter);
	return XDP_PASS;
}

SEC("xdp")
int qlb_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;

	__u32 zero = 0;
	struct qlb_settings *settings = bpf_map_lookup_elem(&qlb_settings, &zero);
	struct scratch *sc = bpf_map_lookup_elem(&qlb_scratch, &zero);
	if (!settings || !sc || !(settings->flags & QLB_SETTINGS_READY))
		return XDP_PASS;
	__u32 generation = settings->generation & 1;

	struct client *client = &sc->client;
	struct qlb_vip_key *vip = &sc->vip;
	__builtin_memset(client, 0, sizeof(*client));
	__builtin_memset(vip, 0, sizeof(*vip));
	__u32 udp_at;
	__u32 ip_payload;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		if (ip->ihl != 5)
			return pass(QLB_C_PASS_IP_OPTIONS);
		if (ip->frag_off & bpf_htons(0x3fff))
			return pass(QLB_C_PASS_FRAGMENT);
		client->v4 = 1;
		client->ecn = ip->tos & 3;
		client->addr[10] = 0xff;
		client->addr[11] = 0xff;
		__builtin_memcpy(client->addr + 12, &ip->saddr, 4);
		vip->family = QLB_FAMILY_V4;
		vip->addr[10] = 0xff;
		vip->addr[11] = 0xff;
		__builtin_memcpy(vip->addr + 12, &ip->daddr, 4);
		udp_at = ETH_LEN + sizeof(struct iphdr);
		ip_payload = bpf_ntohs(ip->tot_len) - sizeof(struct iphdr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		client->v4 = 0;
		client->ecn = (bpf_ntohs(*(__u16 *)ip6) >> 4) & 3;
		__builtin_memcpy(client->addr, &ip6->saddr, 16);
		vip->family = QLB_FAMILY_V6;
		__builtin_memcpy(vip->addr, &ip6->daddr, 16);
		udp_at = ETH_LEN + sizeof(struct ipv6hdr);
		ip_payload = bpf_ntohs(ip6->payload_len);
	} else {
		return XDP_PASS;
	}
	struct udphdr *udp = data + udp_at;
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	vip->port = bpf_ntohs(udp->dest);
	__u32 *vip_index = bpf_map_lookup_elem(&qlb_vips, vip);
	if (!vip_index) {
		/* A wildcard listener: any address of the family on that port. */
		__builtin_memset(vip->addr, 0, 16);
		vip_index = bpf_map_lookup_elem(&qlb_vips, vip);
		if (!vip_index)
			return XDP_PASS;
	}
	client->port = bpf_ntohs(udp->source);
	client->vip = *vip_index;

	/* The UDP length must be the IP payload's, and the datagram checksummed: the inner UDP
	 * header goes to the backend as the client wrote it. */
	__u32 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) || udp_len != ip_payload ||
	    data + udp_at + udp_len > data_end)
		return pass(QLB_C_PASS_MALFORMED);
	if (udp->check == 0)
		return pass(QLB_C_PASS_NO_CHECKSUM);
	client->udp_len = udp_len;

	struct quic *q = &sc->q;
	__builtin_memset(q, 0, sizeof(*q));
	q->len = udp_len - sizeof(struct udphdr);
	if (q->len > 0) {
		/* 1 to HEADER_COPY octets, as the verifier must see it. */
		__u32 copy = q->len - 1;
		if (copy > HEADER_COPY - 1)
			copy = HEADER_COPY - 1;
		if (bpf_xdp_load_bytes(ctx, udp_at + sizeof(struct udphdr), q->bytes, copy + 1))
			return pass(QLB_C_PASS_MALFORMED);
	}

	__u32 refused = parse(q, generation);
	if (refused == QLB_C_PASS_LONG_DCID)
		return pass(refused);
	if (refused) {
		count(refused);
		return XDP_DROP;
	}
	if (q->long_header && q->packet_type == PT_INITIAL &&
	    (settings->flags & QLB_SETTINGS_INITIALS_UP))
		return pass(QLB_C_PASS_INITIAL);

	sc->route = QLB_C_CID;
	struct qlb_backend *backend = route_by_cid(generation, sc);
	int by_cid = backend != 0;
	if (!by_cid)
		backend = route_unroutable(generation, settings, sc);
	if (!backend) {
		count(QLB_C_DROP_NO_BACKEND);
		return XDP_DROP;
	}
	int up = encapsulate(ctx, backend, settings, sc);
	if (up)
		return pass(up);
	count(sc->route);
	if (by_cid)
		count(QLB_C_CODEPOINT_0 + (sc->codepoint & 7));
	if (sc->fib.ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(sc->fib.ifindex, 0);
}
