/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The built-in Stratum signatures, matched on a socket's first bytes: by
 * the sk_msg verdict (stratum.bpf.c), the lsm backend's socket_sendmsg
 * (lsm_stratum.bpf.c) and the TCP Fast Open check (fast_open_tp.bpf.c).
 */
#ifndef MINERGUARD_STRATUM_MATCH_H
#define MINERGUARD_STRATUM_MATCH_H

#include "common.h"

/* Bytes of the first message inspected. */
#define MG_STRATUM_WINDOW 128
/* Slack after the window so pattern compares need no per-byte bounds. */
#define MG_STRATUM_SLACK 16

/* Signature ids, reported in the event's path field by name. */
enum mg_stratum_sig {
	MG_SIG_NONE = 0,
	MG_SIG_V1 = 1,    /* JSON-RPC "method": "mining.*" */
	MG_SIG_LOGIN = 2, /* XMRig-style "method": "login" */
	MG_SIG_V2 = 3,    /* Stratum V2 plaintext SetupConnection */
	MG_SIG_UNREADABLE = 4, /* Fast Open payload the kernel could not read */
};

#define MG_SEEN_METHOD 1
#define MG_SEEN_MINING 2
#define MG_SEEN_LOGIN 4

/* The 8 bytes at buf[i], little-endian (x86_64 and arm64 are). */
static __always_inline __u64 word_at(const char *buf, __u32 i)
{
	__u64 w;

	__builtin_memcpy(&w, buf + i, sizeof(w));
	return w;
}

/* A little-endian word of 8 pattern bytes. */
#define MG_WORD(a, b, c, d, e, f, g, h)                                       \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | \
	 (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 |             \
	 (__u64)(h) << 56)

/*
 * 1 when a == b, else 0, computed without a branch ((d | -d) has its top
 * bit set exactly when d != 0; the barrier keeps clang from turning it back
 * into a compare, which the BPF backend emits as a branch).
 */
static __always_inline __u32 mg_eq(__u64 a, __u64 b)
{
	__u64 d = a ^ b, neg = -d;

	barrier_var(neg);
	return (__u32)(((d | neg) >> 63) ^ 1);
}

/*
 * Which of `"method"`, `"mining.` and `"login"` occur in the window. The
 * buffer is zeroed past the message, so the whole window is scanned with no
 * length test; the loop is unrolled (bpf_loop's callback is refused in
 * sk_msg by 6.1). Only a quote starts a key, so other bytes cost one load
 * and one test. The keys are compared without branches: with a branch per
 * key found, 6.12's verifier followed each combination of keys seen (as
 * constants) and gave up past a million instructions; now `seen` is one
 * unknown value wherever the paths meet.
 */
static __always_inline __u32 scan_keys(const char *buf)
{
	const __u64 method = MG_WORD('"', 'm', 'e', 't', 'h', 'o', 'd', '"');
	const __u64 mining = MG_WORD('"', 'm', 'i', 'n', 'i', 'n', 'g', '.');
	const __u64 login = MG_WORD('"', 'l', 'o', 'g', 'i', 'n', '"', 0);
	__u32 seen = 0;

#pragma clang loop unroll(full)
	for (__u32 i = 0; i < MG_STRATUM_WINDOW; i++) {
		__u64 w;

		if (buf[i] != '"')
			continue;
		w = word_at(buf, i);
		seen |= mg_eq(w, method) * MG_SEEN_METHOD;
		seen |= mg_eq(w, mining) * MG_SEEN_MINING;
		seen |= mg_eq(w & 0x00ffffffffffffffULL, login) * MG_SEEN_LOGIN;
	}
	return seen;
}

/* Which signature the first `len` bytes of buf carry. */
static __always_inline __u8 mg_stratum_signature(const char *buf, __u32 len)
{
	__u32 first = 0, seen;

	/* Stratum V2 SetupConnection: extension 0x0000, type 0x00, 3-byte
	 * length, then protocol 0 (mining), min and max version 2 (LE). */
	if (len >= 11 && buf[0] == 0 && buf[1] == 0 && buf[2] == 0 &&
	    buf[6] == 0 && buf[7] == 2 && buf[8] == 0 && buf[9] == 2 &&
	    buf[10] == 0)
		return MG_SIG_V2;

	/* JSON-RPC: a JSON object, whitespace allowed before it. */
	for (int i = 0; i < 8; i++) {
		char ch = buf[first & (MG_STRATUM_WINDOW - 1)];

		if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
			break;
		first++;
	}
	if (first >= len || buf[first & (MG_STRATUM_WINDOW - 1)] != '{')
		return MG_SIG_NONE;
	seen = scan_keys(buf);
	if (!(seen & MG_SEEN_METHOD))
		return MG_SIG_NONE;
	if (seen & MG_SEEN_MINING)
		return MG_SIG_V1;
	if (seen & MG_SEEN_LOGIN)
		return MG_SIG_LOGIN;
	return MG_SIG_NONE;
}

/* Room for what the verifier can prove about an append (offset below the
 * window, length masked below twice the window), plus the slack the word
 * compares read past the end. */
#define MG_STRATUM_BUF (3 * MG_STRATUM_WINDOW + MG_STRATUM_SLACK)

/* A socket's first bytes while they are being judged. */
struct mg_stratum_state {
	__u32 len;    /* bytes collected (at most MG_STRATUM_WINDOW) */
	__u32 denied; /* a signature matched: every later send is dropped */
	char buf[MG_STRATUM_BUF]; /* zero past len */
};

/*
 * Whether more bytes could still turn the first `len` bytes into a
 * signature: only blanks so far, the start of a JSON object, or the start of
 * a Stratum V2 frame header (extension 0x0000, message type 0x00).
 */
static __always_inline bool mg_stratum_possible(const char *buf, __u32 len)
{
	__u32 first = 0;

	if (len < 11 && buf[0] == 0 && (len < 2 || buf[1] == 0) &&
	    (len < 3 || buf[2] == 0))
		return true;
	for (int i = 0; i < 8; i++) {
		char ch = buf[first & (MG_STRATUM_WINDOW - 1)];

		if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
			break;
		first++;
	}
	if (first >= len)
		return first < 8;
	return buf[first & (MG_STRATUM_WINDOW - 1)] == '{';
}

#endif
