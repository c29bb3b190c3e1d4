/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * The maps' layouts, shared with the daemon: crates/qlb-xdp/src/layout.rs writes exactly
 * these octets (host byte order unless a field says otherwise), and its tests check the sizes.
 *
 * Tables the daemon swaps (pools, configs, server IDs, backends, Maglev) come in two
 * generations: it writes the one not in use, then flips `qlb_settings.generation`, so a packet
 * sees one pool whole, never half of two.
 */
#ifndef QLB_LAYOUT_H
#define QLB_LAYOUT_H

#define QLB_GENERATIONS 2
#define QLB_CODEPOINTS 8
#define QLB_MAX_BACKENDS 65536
#define QLB_MAX_SERVER_IDS 65536
#define QLB_MAX_VIPS 64

#define QLB_SETTINGS_READY 1
/* Initials go up to the daemon, which answers them with Retries. */
#define QLB_SETTINGS_INITIALS_UP 2

#define QLB_POOL_HASH_KEYED 1

#define QLB_FAMILY_V4 4
#define QLB_FAMILY_V6 6

#define QLB_STATE_ABSENT 0
#define QLB_STATE_ACTIVE 1
#define QLB_STATE_DRAINING 2
#define QLB_STATE_DOWN 3

#define QLB_MODE_PLAINTEXT 0
#define QLB_MODE_SINGLE_PASS 1
#define QLB_MODE_FOUR_PASS 2

/* The one entry of qlb_settings. 40 octets. */
struct qlb_settings {
	__u32 generation;
	__u32 flags;
	__u64 idle_timeout_ns;
	__u8 gue_source[16]; /* the outer source address; IPv4 as IPv4-mapped IPv6 */
	__u16 gue_first_port;
	__u16 gue_ports;
	__u8 gue_family;
	__u8 pad[3];
};

/* A generation's fallback. 32 octets. */
struct qlb_pool {
	__u64 k0; /* the SipHash key, when QLB_POOL_HASH_KEYED */
	__u64 k1;
	__u32 maglev_base; /* where its table starts in qlb_maglev */
	__u32 maglev_size;
	__u32 flags;
	__u32 pad;
};

/* A QUIC-LB configuration, at generation * QLB_CODEPOINTS + codepoint. 360 octets. */
struct qlb_config {
	__u8 present;
	__u8 mode;
	__u8 server_id_len;
	__u8 nonce_len;
	__u8 plaintext_len;
	__u8 cid_len;
	__u8 pad[2];
	__u32 enc_round_keys[44];
	__u32 dec_round_keys[44];
};

/* Server ID -> backend index. 20 octets. */
struct qlb_server_id_key {
	__u8 generation;
	__u8 codepoint;
	__u8 len;
	__u8 pad;
	__u8 server_id[16]; /* zero past len */
};

/* A backend, at generation * QLB_MAX_BACKENDS + index. 32 octets. */
struct qlb_backend {
	__u8 state;
	__u8 family;
	__u16 port;
	__u32 pad;
	__u64 key; /* its name's key in the flow tables */
	__u8 addr[16];
};

/* A backend's flow-table key -> its index. 16 octets. */
struct qlb_backend_key {
	__u64 key;
	__u32 generation;
	__u32 pad;
};

/* A VIP (address zero: every address of the family) -> its listener's index. 20 octets. */
struct qlb_vip_key {
	__u8 family;
	__u8 pad;
	__u16 port;
	__u8 addr[16];
};

/* The flow tables' keys and entries. */
struct qlb_dcid_key {
	__u32 vip;
	__u8 len;
	__u8 dcid[20];
	__u8 pad[3];
};

struct qlb_tuple_key {
	__u32 vip;
	__u16 port;
	__u16 pad;
	__u8 addr[16];
};

struct qlb_flow {
	__u64 backend_key;
	__u64 last_used; /* bpf_ktime_get_ns */
};

/* qlb_counters, per CPU. */
enum qlb_counter {
	QLB_C_CID,
	QLB_C_DCID_TABLE,
	QLB_C_TUPLE_TABLE,
	QLB_C_FALLBACK,
	QLB_C_DROP_EMPTY,
	QLB_C_DROP_TRUNCATED,
	QLB_C_DROP_CID_TOO_LONG,
	QLB_C_DROP_VERSION_NEGOTIATION,
	QLB_C_DROP_RETRY,
	QLB_C_DROP_INITIAL_TOO_SMALL,
	QLB_C_DROP_TOO_SHORT,
	QLB_C_DROP_NO_BACKEND,
	QLB_C_PASS_IP_OPTIONS,
	QLB_C_PASS_FRAGMENT,
	QLB_C_PASS_MALFORMED,
	QLB_C_PASS_NO_CHECKSUM,
	QLB_C_PASS_LONG_DCID,
	QLB_C_PASS_INITIAL,
	QLB_C_PASS_FAMILY,
	QLB_C_PASS_NO_ROUTE,
	QLB_C_PASS_FORWARDING_OFF,
	QLB_C_PASS_TOO_BIG,
	QLB_C_PASS_NO_ROOM,
	QLB_C_CODEPOINT_0,
	QLB_COUNTERS = QLB_C_CODEPOINT_0 + QLB_CODEPOINTS,
};

#endif
