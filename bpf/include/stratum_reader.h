/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The Stratum judge: reads the stream a TCP socket sends, byte by byte, as
 * pool software would, and says when it carries a mining method. Shared by
 * the sk_msg verdict (stratum.bpf.c), the lsm backend's socket_sendmsg
 * (lsm_stratum.bpf.c) and the TCP Fast Open check (fast_open_tp.bpf.c).
 *
 * Not a window of first bytes, a reader with state kept per socket:
 *  - framing: a Stratum V2 SetupConnection header; a SOCKS4/4a or SOCKS5
 *    handshake (with or without user/password) or an HTTP CONNECT request,
 *    after which the tunnelled stream is read as a new one; an HTTP/1.1
 *    WebSocket upgrade, after which the (masked) frames are unmasked and
 *    their payload read; anything else is text;
 *  - text is read as JSON-RPC twice over: as lines (pools split their
 *    input on newlines and parse each line, so a broken line ends there)
 *    and as a stream (pools that parse a stream of JSON values). In both,
 *    a BOM, whitespace, blank lines and non-JSON lines are skipped, batches
 *    are read, the top-level "method" member is found in any position, `\u`
 *    escapes are decoded, and the key and the method name are compared
 *    without case;
 *  - a method value is looked up in mg_stratum_methods (the profile's list;
 *    "mining.*" style prefixes are decided at the dot, exact names at the
 *    closing quote). The send that carries the deciding byte is refused;
 *  - where the policy lists `signatures`, every byte read (a WebSocket
 *    payload's unmasked) also steps the policy's signature automaton
 *    (mg_stratum_sigs), which finds any of them anywhere in what is read.
 *
 * A socket is read up to MG_READ_BUDGET bytes or MG_READ_MESSAGES complete
 * JSON messages, whichever comes first, and then released.
 */
#ifndef MINERGUARD_STRATUM_READER_H
#define MINERGUARD_STRATUM_READER_H

#include "common.h"

/* Bytes of a socket's stream read before it is released. */
#define MG_READ_BUDGET 4096
/* Complete JSON messages read before it is released. */
#define MG_READ_MESSAGES 8

/* Signature families, reported in the event's path[0] (named in
 * userspace); path[1..] holds the method name. */
enum mg_stratum_sig {
	MG_SIG_NONE = 0,
	MG_SIG_V1 = 1,    /* Stratum v1: "mining.*" */
	MG_SIG_LOGIN = 2, /* XMRig / CryptoNote: login, submit, getjob, keepalived */
	MG_SIG_V2 = 3,    /* Stratum V2 plaintext SetupConnection */
	MG_SIG_UNREADABLE = 4, /* Fast Open payload the kernel could not read */
	MG_SIG_ETHPROXY = 5,   /* EthProxy: eth_submitLogin, eth_getWork, ... */
	MG_SIG_SOLO = 6,       /* a node's getblocktemplate / submitblock */
	MG_SIG_CUSTOM = 7,     /* a method the profile lists itself */
	MG_SIG_MPTCP = 8,      /* an MPTCP socket where only sk_msg reads streams */
	MG_SIG_TFO_CONNECT = 9, /* TCP_FASTOPEN_CONNECT where only sk_msg reads streams */
	MG_SIG_UNTRACKED = 10,  /* a connection the full sockhash could not take */
	MG_SIG_SIGNATURE = 11,  /* one of the profile's `signatures` (path[1]: 1 + its index) */
	MG_SIG_GAP = 12,        /* lsm: a stream the reader cannot follow (a send taken in part, sends racing) */
	MG_SIG_SMC = 13,        /* lsm: a send of an SMC socket (its TCP fallback is written past the hook) */
	MG_SIG_WAIT = 14,       /* lsm: a blocking send the kernel may take only after a wait */
};

/* What a byte did to the reader. */
enum mg_read_verdict {
	MG_READ_MORE = 0,   /* keep reading */
	MG_READ_MINING = 1, /* a mining method: refuse (r->sig, r->method) */
	MG_READ_DONE = 2,   /* budget spent: release the socket */
};

/* enum mg_frame: how the bytes are framed. */
#define MG_FR_START 0  /* first byte of a (possibly tunnelled) stream */
#define MG_FR_TEXT 1   /* newline-delimited text: JSON-RPC, HTTP */
#define MG_FR_V2 2     /* a Stratum V2 frame header */
#define MG_FR_SOCKS5 3 /* a SOCKS5 client handshake */
#define MG_FR_SOCKS4 4 /* a SOCKS4/4a request */
#define MG_FR_WS 5     /* WebSocket frames (client side) */

/* SOCKS5 steps (r->sub). */
#define MG_S5_NMETHODS 0
#define MG_S5_METHODS 1
#define MG_S5_NEXT 2 /* an auth sub-negotiation (01) or the request (05) */
#define MG_S5_ULEN 3
#define MG_S5_USER 4
#define MG_S5_PLEN 5
#define MG_S5_PASS 6
#define MG_S5_CMD 7
#define MG_S5_ATYP 8
#define MG_S5_DLEN 9
#define MG_S5_ADDR 10

/* WebSocket steps (r->sub). */
#define MG_WS_OP 0
#define MG_WS_LEN 1
#define MG_WS_EXT 2
#define MG_WS_MASK 3
#define MG_WS_DATA 4

/* r->http bits: the text's first line, and its header block. */
#define MG_H_CONNECT_OK 1 /* the first line still spells "CONNECT " */
#define MG_H_GET_OK 2     /* the first line still spells "GET " */
#define MG_H_CONNECT 4    /* an HTTP CONNECT request's headers */
#define MG_H_GET 8        /* an HTTP GET request's headers */
#define MG_H_WS 16        /* "websocket" in those headers */
#define MG_H_FIRST 32     /* on the text's first line */
#define MG_H_UPGRADE 64   /* this header line still spells "upgrade:" */

/* mg_json_view.flags */
#define MG_J_STR 1     /* inside a string */
#define MG_J_KEY 2     /* the next message-level string is a key */
#define MG_J_CAPKEY 4  /* reading a message-level key */
#define MG_J_CAPVAL 8  /* reading the method's value */
#define MG_J_METHOD 16 /* the key just read is "method" */
#define MG_J_VALUE 32  /* after `"method":`: its value comes next */
#define MG_J_JUNK 64   /* skipping a line that is not JSON */
#define MG_J_KEYOK 128 /* the key read so far spells the start of "method" */

/* One reading of the text as JSON-RPC. */
struct mg_json_view {
	__u16 depth;    /* nesting of objects and arrays */
	__u8 batch;     /* the top-level value is an array */
	__u8 flags;     /* MG_J_* */
	__u8 esc;       /* 0; 1 after a backslash; 2..5 at \u's hex digits */
	__u8 pos;       /* characters of the key or value read (decoded) */
	__u8 dot;       /* 1 + where the value's first '.' is; 0: none yet */
	__u8 messages;  /* complete messages */
	__u16 uval;     /* a \u escape's value so far */
	__u8 _pad[2];
	struct mg_method_key key; /* the policy, and the value read (lower case) */
};

/* A socket's reader. */
struct mg_reader {
	__u32 seen;     /* bytes read */
	__u32 need;     /* framing: bytes still to skip or to unmask */
	__u8 frame;     /* MG_FR_* */
	__u8 sub;       /* step within the frame */
	__u8 http;      /* MG_H_* */
	__u8 line_pos;  /* non-CR characters on the current text line (max 255) */
	__u8 ws_pos;    /* characters of "websocket" matched */
	__u8 ws_data;   /* the WebSocket frame's payload is data (read) */
	__u8 sig;       /* family of the method that matched */
	__u8 mask_i;    /* WebSocket: payload bytes unmasked (mod 4), or ext-length bytes left */
	__u8 mask[4];   /* WebSocket masking key */
	__u8 quiet;     /* MG_Q_*: which bytes can change anything (mg_reader_quiet) */
	__u8 diverged;  /* the stream view differs from the line view (else stale) */
	__u16 sig_state; /* the signature automaton's state; 0: no signatures */
	struct mg_json_view line;   /* the text read line by line */
	struct mg_json_view stream; /* the text read as a stream */
	char method[MG_METHOD_LEN]; /* the method that matched */
	struct mg_sig_first sig_first; /* with sig_state: the bytes signatures start with */
};

/* "CONNECT " and "GET " as little-endian words: byte n is character n. */
#define MG_CONNECT_WORD 0x205443454e4e4f43ULL
#define MG_GET_WORD 0x20544547ULL
/* "upgrade:" (a header name, compared in lower case). */
#define MG_UPGRADE_WORD 0x3a65646172677075ULL
/* "websocke" (and a final 't'). */
#define MG_WEBSOCKE_WORD 0x656b636f73626577ULL

static __always_inline __u8 mg_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static __always_inline void mg_view_reset(struct mg_json_view *v)
{
	v->depth = 0;
	v->batch = 0;
	v->flags = 0;
	v->esc = 0;
}

/* The signature automaton's start state. */
#define MG_SIG_START 1

/* A new reader for a policy's stratum rule `ref`. */
static __always_inline void mg_reader_init(struct mg_reader *r, __u32 policy_id,
					   const struct mg_rule_ref *ref)
{
	__builtin_memset(r, 0, sizeof(*r));
	r->line.key.policy_id = policy_id;
	r->stream.key.policy_id = policy_id;
	if (ref->flags & MG_REF_SIGNATURES) {
		struct mg_sig_first *first =
			bpf_map_lookup_elem(&mg_stratum_sig_first, &policy_id);

		r->sig_state = MG_SIG_START;
		/* Without it every byte is looked up (none is skipped). */
		if (first)
			__builtin_memcpy(&r->sig_first, first, sizeof(*first));
		else
			__builtin_memset(&r->sig_first, 0xff, sizeof(r->sig_first));
	}
}

/*
 * The next byte of the stream (before mg_read_byte reads it) through the
 * policy's signature automaton: 1 when one of its signatures ends there
 * (recorded as the match: family MG_SIG_SIGNATURE, method[0] = 1 + the
 * signature's index). Bytes as sent, but a WebSocket payload's, which are
 * looked at unmasked; nothing past the reader's budget. A step not in the
 * map goes back to the start (no signature continues with that byte); at
 * the start, a byte no signature starts with (`first`, the policy's
 * mg_stratum_sig_first, when found) is not looked up at all.
 *
 * Not inlined: its stack (the key) and branches end at the return, so the
 * verifier walks the reader after it once, not once per way through it.
 */
static __noinline int mg_sig_byte(struct mg_reader *r, __u8 c)
{
	struct mg_sig_key k = {};
	struct mg_sig_step *step;

	if (!r || r->seen >= MG_READ_BUDGET || r->line.messages >= MG_READ_MESSAGES)
		return 0;
	if (r->frame == MG_FR_WS && r->sub == MG_WS_DATA)
		c ^= r->mask[r->mask_i & 3];
	if (r->sig_state == MG_SIG_START &&
	    !(r->sig_first.bits[(c >> 6) & 3] & (1ULL << (c & 63))))
		return 0;
	k.policy_id = r->line.key.policy_id;
	k.state = r->sig_state;
	k.byte = c;
	step = bpf_map_lookup_elem(&mg_stratum_sigs, &k);
	if (!step) {
		r->sig_state = MG_SIG_START;
		return 0;
	}
	r->sig_state = step->state;
	if (!step->found)
		return 0;
	r->sig = MG_SIG_SIGNATURE;
	__builtin_memset(r->method, 0, MG_METHOD_LEN);
	r->method[0] = (char)(step->found > 255 ? 255 : step->found);
	return 1;
}

/* A tunnel is open: what follows is read as a new stream. */
static __always_inline void mg_reader_restart(struct mg_reader *r)
{
	r->frame = MG_FR_START;
	r->sub = 0;
	r->need = 0;
	r->http = 0;
	r->line_pos = 0;
	r->ws_pos = 0;
	r->diverged = 0;
	mg_view_reset(&r->line);
	mg_view_reset(&r->stream);
}

/* The family of the method named in v->key, or MG_SIG_NONE. */
static __always_inline __u8 mg_method_family(struct mg_json_view *v)
{
	struct mg_method *m = bpf_map_lookup_elem(&mg_stratum_methods, &v->key);

	return m ? m->sig : MG_SIG_NONE;
}

/*
 * One decoded character of a message-level key or of the method's value.
 * Returns a family once the value is known to be a mining method ("mining."
 * with a prefix entry "mining.*").
 */
static __always_inline __u8 mg_view_char(struct mg_json_view *v, __u8 d)
{
	__u8 pos = v->pos;
	__u8 want;

	d = mg_lower(d);
	if (v->flags & MG_J_CAPKEY) {
		/* "method", one character at a time. */
		want = pos < 6 ? (__u8)(0x646f6874656dULL >> (pos * 8)) : 0;
		/* Not "method": the rest of the key is a string like any
		 * other (quiet, see mg_view_quiet). */
		if (d != want)
			v->flags &= ~(MG_J_KEYOK | MG_J_CAPKEY);
		if (pos < 255)
			v->pos = pos + 1;
		return MG_SIG_NONE;
	}
	/* The method value: too long for any listed name once it fills the
	 * key (pos then stays past the last index). */
	if (pos >= MG_METHOD_LEN - 1) {
		v->pos = MG_METHOD_LEN;
		return MG_SIG_NONE;
	}
	v->key.name[pos & (MG_METHOD_LEN - 1)] = d;
	v->pos = pos + 1;
	if (d == '.' && !v->dot) {
		__u8 sig;

		v->dot = pos + 1;
		/* A prefix entry ("mining.*") decides at the dot. */
		v->key.name[(pos + 1) & (MG_METHOD_LEN - 1)] = '*';
		sig = mg_method_family(v);
		v->key.name[(pos + 1) & (MG_METHOD_LEN - 1)] = 0;
		return sig;
	}
	return MG_SIG_NONE;
}

/* A string ends (its closing quote). Returns the method's family when it
 * was the method's value and names a mining method. */
static __always_inline __u8 mg_view_string_end(struct mg_json_view *v)
{
	__u8 sig = MG_SIG_NONE;

	if (v->flags & MG_J_CAPKEY) {
		if ((v->flags & MG_J_KEYOK) && v->pos == 6)
			v->flags |= MG_J_METHOD;
	} else if (v->flags & MG_J_CAPVAL) {
		if (v->pos > 0 && v->pos < MG_METHOD_LEN)
			sig = mg_method_family(v);
		v->flags &= ~MG_J_VALUE;
	}
	v->flags &= ~(MG_J_STR | MG_J_CAPKEY | MG_J_CAPVAL | MG_J_KEY | MG_J_KEYOK);
	return sig;
}

static __always_inline int mg_hex(__u8 c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = mg_lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * One byte of text for one view. `lines`: the view that parses each line by
 * itself. Returns a family when a mining method is decided.
 */
static __always_inline __u8 mg_view_byte(struct mg_json_view *v, __u8 c, __u32 lines)
{
	__u16 msg_depth;
	int h;

	if (!v)
		return MG_SIG_NONE;
	if (c == '\n' && (lines || (v->flags & MG_J_JUNK))) {
		/* A line ends: line-based pools start over whatever state the
		 * line left (a broken message is dropped there). */
		if (lines || !(v->flags & MG_J_STR))
			mg_view_reset(v);
		return MG_SIG_NONE;
	}
	if (v->flags & MG_J_JUNK)
		return MG_SIG_NONE;
	if (v->flags & MG_J_STR) {
		if (v->esc == 1) {
			v->esc = 0;
			if (c == 'u') {
				v->esc = 2;
				v->uval = 0;
				return MG_SIG_NONE;
			}
			/* \n, \t and friends are never in a method name. */
			if (c != '"' && c != '\\' && c != '/')
				c = 1;
		} else if (v->esc >= 2) {
			h = mg_hex(c);
			if (h < 0) {
				v->esc = 0;
				return MG_SIG_NONE;
			}
			v->uval = v->uval << 4 | h;
			if (++v->esc < 6)
				return MG_SIG_NONE;
			v->esc = 0;
			/* ASCII is enough for method names: others never match. */
			c = v->uval < 0x80 ? v->uval : 1;
		} else if (c == '\\') {
			v->esc = 1;
			return MG_SIG_NONE;
		} else if (c == '"') {
			return mg_view_string_end(v);
		}
		if (v->flags & (MG_J_CAPKEY | MG_J_CAPVAL))
			return mg_view_char(v, c);
		return MG_SIG_NONE;
	}

	msg_depth = v->batch ? 2 : 1;
	switch (c) {
	case ' ':
	case '\t':
	case '\r':
	case '\n':
		return MG_SIG_NONE;
	case '"':
		v->flags |= MG_J_STR;
		if (v->depth != msg_depth)
			return MG_SIG_NONE;
		if (v->flags & MG_J_KEY) {
			v->flags |= MG_J_CAPKEY | MG_J_KEYOK;
			v->pos = 0;
		} else if (v->flags & MG_J_VALUE) {
			v->flags |= MG_J_CAPVAL;
			v->pos = 0;
			v->dot = 0;
			__builtin_memset(v->key.name, 0, MG_METHOD_LEN);
		}
		return MG_SIG_NONE;
	case '{':
		if (v->depth == 0 || (v->depth == 1 && v->batch)) {
			/* A message starts. */
			if (v->depth == 0)
				v->batch = 0;
			v->depth++;
			v->flags = MG_J_KEY;
			return MG_SIG_NONE;
		}
		goto nested;
	case '[':
		if (v->depth == 0) {
			v->batch = 1;
			v->depth = 1;
			v->flags = 0;
			return MG_SIG_NONE;
		}
nested:
		if (v->depth == msg_depth)
			v->flags &= ~(MG_J_METHOD | MG_J_VALUE);
		if (v->depth < 0xffff)
			v->depth++;
		return MG_SIG_NONE;
	case '}':
	case ']':
		if (v->depth == 0)
			break;
		v->depth--;
		if (v->depth == 0 || (v->batch && v->depth == 1 && c == '}')) {
			if (v->messages < 255)
				v->messages++;
			v->flags = 0;
		}
		return MG_SIG_NONE;
	case ':':
		if (v->depth == msg_depth && (v->flags & MG_J_METHOD))
			v->flags = (v->flags & ~MG_J_METHOD) | MG_J_VALUE;
		return MG_SIG_NONE;
	case ',':
		if (v->depth == msg_depth)
			v->flags = MG_J_KEY;
		return MG_SIG_NONE;
	case 0xef: /* a UTF-8 BOM, between messages */
	case 0xbb:
	case 0xbf:
		if (v->depth == 0)
			return MG_SIG_NONE;
		break;
	default:
		break;
	}
	if (v->depth == 0) {
		/* Not JSON: skip the line. */
		v->flags |= MG_J_JUNK;
		return MG_SIG_NONE;
	}
	/* A number, literal or stray byte inside: the method is not a string. */
	if (v->depth == msg_depth)
		v->flags &= ~(MG_J_METHOD | MG_J_VALUE);
	return MG_SIG_NONE;
}

/* Records a match: its family and method name. */
static __always_inline int mg_reader_hit(struct mg_reader *r,
					 struct mg_json_view *v, __u8 sig)
{
	r->sig = sig;
	__builtin_memcpy(r->method, v->key.name, MG_METHOD_LEN);
	return MG_READ_MINING;
}

/* Between messages, or skipping a line: two views both in one of these
 * states (the same one) read the rest alike. */
static __always_inline bool mg_view_between(const struct mg_json_view *v)
{
	return (v->flags & MG_J_JUNK) || (!v->depth && !(v->flags & MG_J_STR));
}

/* One byte of text (or of a WebSocket payload): HTTP framing, then the
 * JSON views. Inlined into the byte loop for text (most bytes: a BPF call
 * and its return cost more than the byte's work on CPUs with return-thunk
 * mitigations); mg_read_text below for the other framings. */
static __always_inline int mg_read_text_inline(struct mg_reader *r, __u8 c, bool http)
{
	__u8 sig, lc, p;

	if (http) {
		if (c == '\n') {
			if (r->line_pos == 0 && (r->http & (MG_H_CONNECT | MG_H_GET))) {
				/* The blank line ending a request's headers. */
				if (r->http & MG_H_CONNECT) {
					mg_reader_restart(r);
					return MG_READ_MORE;
				}
				if (r->http & MG_H_WS) {
					r->frame = MG_FR_WS;
					r->sub = MG_WS_OP;
					r->need = 0;
					return MG_READ_MORE;
				}
				r->http = 0;
			}
			if (r->http & MG_H_FIRST) {
				if (r->line_pos >= 8 && (r->http & MG_H_CONNECT_OK))
					r->http |= MG_H_CONNECT;
				else if (r->line_pos >= 4 && (r->http & MG_H_GET_OK))
					r->http |= MG_H_GET;
				r->http &= ~(MG_H_FIRST | MG_H_CONNECT_OK | MG_H_GET_OK);
			}
			r->line_pos = 0;
		} else if (c != '\r') {
			p = r->line_pos;
			if (r->http & MG_H_FIRST) {
				if (p < 8 && c != (__u8)(MG_CONNECT_WORD >> (p * 8)))
					r->http &= ~MG_H_CONNECT_OK;
				if (p < 4 && c != (__u8)(MG_GET_WORD >> (p * 8)))
					r->http &= ~MG_H_GET_OK;
			}
			if (r->http & MG_H_GET) {
				/* "websocket", any case, in the value of an
				 * "Upgrade:" header (servers take no other). */
				lc = mg_lower(c);
				if (p == 0)
					r->http |= MG_H_UPGRADE;
				if (p < 8) {
					if (lc != (__u8)(MG_UPGRADE_WORD >> (p * 8)))
						r->http &= ~MG_H_UPGRADE;
					r->ws_pos = 0;
				} else if (r->http & MG_H_UPGRADE) {
					if (r->ws_pos < 8 &&
					    lc == (__u8)(MG_WEBSOCKE_WORD >> (r->ws_pos * 8)))
						r->ws_pos++;
					else if (r->ws_pos == 8 && lc == 't')
						r->http |= MG_H_WS;
					else
						r->ws_pos = lc == 'w';
				}
			}
			if (p < 255)
				r->line_pos = p + 1;
		}
	}
	/*
	 * The two views read the same until a line ends inside a value or a
	 * string (the line view starts over there, the stream view goes on):
	 * until then only the line view runs, and the stream view is a copy
	 * of it made at that line end. They agree again once both are between
	 * messages, or both skip a line.
	 */
	if (!r->diverged) {
		if (c != '\n' || (!r->line.depth && !(r->line.flags & MG_J_STR))) {
			sig = mg_view_byte(&r->line, c, 1);
			if (sig)
				return mg_reader_hit(r, &r->line, sig);
			return MG_READ_MORE;
		}
		__builtin_memcpy(&r->stream, &r->line, sizeof(r->stream));
		r->diverged = 1;
	}
	sig = mg_view_byte(&r->line, c, 1);
	if (sig)
		return mg_reader_hit(r, &r->line, sig);
	sig = mg_view_byte(&r->stream, c, 0);
	if (sig)
		return mg_reader_hit(r, &r->stream, sig);
	if (mg_view_between(&r->line) && mg_view_between(&r->stream) &&
	    (r->line.flags & MG_J_JUNK) == (r->stream.flags & MG_J_JUNK))
		r->diverged = 0;
	return MG_READ_MORE;
}

static __noinline int mg_read_text(struct mg_reader *r, __u8 c, bool http)
{
	return mg_read_text_inline(r, c, http);
}

/* Leaves a framing that did not hold: this byte starts a non-JSON line. */
static __always_inline int mg_read_as_junk(struct mg_reader *r, __u8 c)
{
	r->frame = MG_FR_TEXT;
	r->http = 0;
	r->line_pos = 0;
	r->line.flags = MG_J_JUNK;
	r->stream.flags = MG_J_JUNK;
	return mg_read_text(r, c, true);
}

/* Stratum V2 SetupConnection: extension 0x0000, type 0x00, a 3-byte
 * length, protocol 0 (mining), min and max version 2 (little-endian). */
static __always_inline int mg_read_v2(struct mg_reader *r, __u8 c)
{
	__u8 i = r->sub;
	bool ok;

	if (i >= 3 && i <= 5)
		ok = true;
	else if (i == 7 || i == 9)
		ok = c == 2;
	else
		ok = c == 0;
	if (!ok)
		return mg_read_as_junk(r, c);
	if (i == 10) {
		r->sig = MG_SIG_V2;
		__builtin_memset(r->method, 0, MG_METHOD_LEN);
		return MG_READ_MINING;
	}
	r->sub = i + 1;
	return MG_READ_MORE;
}

/* SOCKS5, client side: greeting, optional user/password, request. */
static __always_inline int mg_read_socks5(struct mg_reader *r, __u8 c)
{
	switch (r->sub) {
	case MG_S5_NMETHODS:
		r->need = c;
		r->sub = c ? MG_S5_METHODS : MG_S5_NEXT;
		return MG_READ_MORE;
	case MG_S5_METHODS:
	case MG_S5_USER:
	case MG_S5_PASS:
	case MG_S5_CMD:
	case MG_S5_ADDR:
		if (r->need > 1) {
			r->need--;
			return MG_READ_MORE;
		}
		r->need = 0;
		switch (r->sub) {
		case MG_S5_USER:
			r->sub = MG_S5_PLEN;
			break;
		case MG_S5_CMD:
			r->sub = MG_S5_ATYP;
			break;
		case MG_S5_ADDR:
			mg_reader_restart(r);
			break;
		default:
			r->sub = MG_S5_NEXT;
		}
		return MG_READ_MORE;
	case MG_S5_NEXT:
		if (c == 1) {
			r->sub = MG_S5_ULEN;
		} else if (c == 5) {
			r->sub = MG_S5_CMD;
			r->need = 2; /* command, reserved */
		} else {
			return mg_read_as_junk(r, c);
		}
		return MG_READ_MORE;
	case MG_S5_ULEN:
	case MG_S5_PLEN:
		r->need = c;
		if (c)
			r->sub = r->sub == MG_S5_ULEN ? MG_S5_USER : MG_S5_PASS;
		else
			r->sub = r->sub == MG_S5_ULEN ? MG_S5_PLEN : MG_S5_NEXT;
		return MG_READ_MORE;
	case MG_S5_ATYP:
		if (c == 1) {
			r->need = 4 + 2;
		} else if (c == 4) {
			r->need = 16 + 2;
		} else if (c == 3) {
			r->sub = MG_S5_DLEN;
			return MG_READ_MORE;
		} else {
			return mg_read_as_junk(r, c);
		}
		r->sub = MG_S5_ADDR;
		return MG_READ_MORE;
	case MG_S5_DLEN:
		r->need = c + 2;
		r->sub = MG_S5_ADDR;
		return MG_READ_MORE;
	}
	return mg_read_as_junk(r, c);
}

/*
 * SOCKS4 and 4a: command, port (2), address (4), user id up to a NUL; with
 * an address 0.0.0.x (x > 0, SOCKS4a) a host name up to a NUL follows.
 * r->sub counts the fixed bytes; mask[0] remembers "4a".
 */
static __always_inline int mg_read_socks4(struct mg_reader *r, __u8 c)
{
	__u8 i = r->sub;

	if (i < 7) {
		if (i == 3)
			r->mask[0] = 1;
		if (i >= 3 && i <= 5 && c)
			r->mask[0] = 0;
		if (i == 6 && !c)
			r->mask[0] = 0;
		r->sub = i + 1;
		return MG_READ_MORE;
	}
	if (c)
		return MG_READ_MORE;
	if (i == 7 && r->mask[0]) {
		r->sub = 8; /* the SOCKS4a host name */
		return MG_READ_MORE;
	}
	mg_reader_restart(r);
	return MG_READ_MORE;
}

/* WebSocket frames from the client: header, masking key, payload. */
static __always_inline int mg_read_ws(struct mg_reader *r, __u8 c)
{
	__u8 len;

	switch (r->sub) {
	case MG_WS_OP:
		/* Continuation, text and binary frames carry the messages;
		 * control frames (ping, pong, close) are skipped. */
		r->ws_data = (c & 0x0f) <= 2;
		r->sub = MG_WS_LEN;
		return MG_READ_MORE;
	case MG_WS_LEN:
		len = c & 0x7f;
		r->mask_i = 0;
		__builtin_memset(r->mask, 0, 4);
		r->need = len;
		r->ws_pos = c & 0x80; /* masked */
		if (len >= 126) {
			r->need = 0;
			r->mask_i = len == 126 ? 2 : 8;
			r->sub = MG_WS_EXT;
			return MG_READ_MORE;
		}
		goto header_done;
	case MG_WS_EXT:
		/* Big-endian length; more than 4 GiB reads as "the rest". */
		if (r->need >> 24)
			r->need = 0xffffffff;
		else
			r->need = r->need << 8 | c;
		if (--r->mask_i)
			return MG_READ_MORE;
		goto header_done;
	case MG_WS_MASK:
		r->mask[r->mask_i & 3] = c;
		if (++r->mask_i < 4)
			return MG_READ_MORE;
		r->mask_i = 0;
		r->sub = r->need ? MG_WS_DATA : MG_WS_OP;
		return MG_READ_MORE;
	case MG_WS_DATA:
		c ^= r->mask[r->mask_i & 3];
		r->mask_i++;
		if (--r->need == 0)
			r->sub = MG_WS_OP;
		if (r->ws_data)
			return mg_read_text(r, c, false);
		return MG_READ_MORE;
	}
	return MG_READ_MORE;

header_done:
	if (r->ws_pos) {
		r->ws_pos = 0;
		r->mask_i = 0;
		r->sub = MG_WS_MASK;
	} else {
		r->sub = r->need ? MG_WS_DATA : MG_WS_OP;
	}
	return MG_READ_MORE;
}

/* One byte of the socket's stream (inlined into the byte loop). */
static __always_inline int mg_read_byte(struct mg_reader *r, __u8 c)
{
	if (!r)
		return MG_READ_DONE;
	if (r->seen >= MG_READ_BUDGET || r->line.messages >= MG_READ_MESSAGES)
		return MG_READ_DONE;
	r->seen++;
	switch (r->frame) {
	case MG_FR_START:
		r->sub = 0;
		r->need = 0;
		if (c == 0x00) {
			r->frame = MG_FR_V2;
			r->sub = 1;
			return MG_READ_MORE;
		}
		if (c == 0x05) {
			r->frame = MG_FR_SOCKS5;
			return MG_READ_MORE;
		}
		if (c == 0x04) {
			r->frame = MG_FR_SOCKS4;
			return MG_READ_MORE;
		}
		r->frame = MG_FR_TEXT;
		r->http = MG_H_FIRST | MG_H_CONNECT_OK | MG_H_GET_OK;
		r->line_pos = 0;
		r->ws_pos = 0;
		return mg_read_text(r, c, true);
	case MG_FR_TEXT:
		return mg_read_text_inline(r, c, true);
	case MG_FR_V2:
		return mg_read_v2(r, c);
	case MG_FR_SOCKS5:
		return mg_read_socks5(r, c);
	case MG_FR_SOCKS4:
		return mg_read_socks4(r, c);
	case MG_FR_WS:
		return mg_read_ws(r, c);
	}
	return MG_READ_DONE;
}

/* Quiet readers (r->quiet): the bytes a run of others leaves unchanged
 * but for the byte and line counts. */
#define MG_Q_STR 1    /* '"', '\\', CR, LF: in strings, skipped lines */
#define MG_Q_STRUCT 2 /* '"', CR, LF, '{', '}', '[', ']', ',', ':': between
		       * a message's members (numbers, literals, blanks) */

/* Which quiet kinds a view allows: it skips a line (both); it is inside a
 * string it does not read; or it is inside a message, outside strings,
 * with no "method" key pending (a number or literal changes nothing). */
static __always_inline __u8 mg_view_quiet(const struct mg_json_view *v)
{
	if (v->flags & MG_J_JUNK)
		return MG_Q_STR | MG_Q_STRUCT;
	if (v->flags & MG_J_STR)
		return (v->flags & (MG_J_CAPKEY | MG_J_CAPVAL)) || v->esc ? 0 : MG_Q_STR;
	return v->depth && !(v->flags & (MG_J_METHOD | MG_J_VALUE)) ? MG_Q_STRUCT : 0;
}

/*
 * Which bytes can change more than the byte and line counts (MG_Q_*, 0:
 * any): those of the kind every view allows, in text past where the HTTP
 * framing looks (a first line while it may still spell "CONNECT " or
 * "GET ", the first byte of a GET's header lines, and a header line while
 * it may still spell "upgrade:", through its value). Most of a stream is
 * other bytes (strings, numbers, skipped lines, headers), so they take a
 * short path: an HTTP header that is not Upgrade goes by at its first
 * byte (#25: a request's headers were read a byte at a time for 8 bytes).
 */
static __always_inline __u8 mg_reader_quiet(const struct mg_reader *r)
{
	__u8 q;

	if (r->frame != MG_FR_TEXT)
		return 0;
	if ((r->http & MG_H_FIRST) && r->line_pos < 8 &&
	    (r->http & (MG_H_CONNECT_OK | MG_H_GET_OK)))
		return 0;
	if ((r->http & MG_H_GET) && (r->line_pos == 0 || (r->http & MG_H_UPGRADE)))
		return 0;
	q = mg_view_quiet(&r->line);
	if (r->diverged)
		q &= mg_view_quiet(&r->stream);
	/* Both kinds: the one with fewer bytes to stop at. */
	return q & MG_Q_STR ? MG_Q_STR : q;
}

/* Whether the reader has nothing left to read. */
static __always_inline bool mg_reader_spent(const struct mg_reader *r)
{
	return r->seen >= MG_READ_BUDGET || r->line.messages >= MG_READ_MESSAGES;
}

/* Puts a match into a Stratum event: the family in path[0], the method
 * name after it. */
static __always_inline void mg_stratum_event_method(struct mg_event *e,
						    const struct mg_reader *r)
{
	e->path[0] = r->sig;
	__builtin_memcpy(e->path + 1, r->method, MG_METHOD_LEN);
	e->path[MG_METHOD_LEN + 1] = 0;
}

/* Feeding a buffer to a reader with bpf_loop. */
struct mg_feed {
	struct mg_reader *r;
	const __u8 *buf; /* MG_READ_BUDGET bytes readable */
	__u32 verdict;
	__u32 base; /* r->seen before buf[0]: the cursor is r->seen - base */
	__u32 n;    /* bytes to read */
	__u32 _pad;
};

#define MG_ONES 0x0101010101010101ULL
#define MG_HIGHS 0x8080808080808080ULL

/* The high bit of each byte of w that is zero (exact up to the lowest
 * such byte, which is all the caller uses). */
static __always_inline __u64 mg_zero_bytes(__u64 w)
{
	return (w - MG_ONES) & ~w & MG_HIGHS;
}

/*
 * How many of the bytes of w (little-endian: byte 0 first) come before the
 * first one a reader quiet of kind q stops at (8: none). Without branches:
 * each one here costs the verifier a walk of the rest of the step.
 */
static __always_inline __u32 mg_quiet_run(__u64 w, __u8 q)
{
	/* '[' and ']' differ from '{' and '}' in bit 5 alone. */
	__u64 b = w | (0x20 * MG_ONES);
	__u64 str = (__u64)0 - (q & MG_Q_STR);
	__u64 m = mg_zero_bytes(w ^ ('"' * MG_ONES)) |
		  mg_zero_bytes(w ^ ('\n' * MG_ONES)) |
		  mg_zero_bytes(w ^ ('\r' * MG_ONES));

	m |= str & mg_zero_bytes(w ^ ('\\' * MG_ONES));
	m |= ~str & (mg_zero_bytes(b ^ ('{' * MG_ONES)) |
		     mg_zero_bytes(b ^ ('}' * MG_ONES)) |
		     mg_zero_bytes(w ^ (',' * MG_ONES)) |
		     mg_zero_bytes(w ^ (':' * MG_ONES)));
	if (!m)
		return 8;
	/* Index of the lowest marked byte: its bit isolated, shifted to bit
	 * 8k, times a constant whose byte 7-k is k lands k in the top byte. */
	m &= -m;
	return ((m >> 7) * 0x0001020304050607ULL) >> 56;
}

/* Quiet bytes change nothing but the counts. */
static __always_inline void mg_reader_skip(struct mg_reader *r, __u32 k)
{
	__u32 lp = r->line_pos + k;

	r->seen += k;
	r->line_pos = lp > 255 ? 255 : lp;
}

/*
 * Skips the quiet bytes from buf[pos] on: up to a word's worth (or one
 * byte at the buffer's end). Returns how many. One word per step: each
 * more word unrolled here costs the verifier more than the whole reader.
 */
static __always_inline __u32 mg_skip_quiet(struct mg_reader *r, const __u8 *buf,
					   __u32 pos, __u32 n)
{
	__u32 off = pos & (MG_READ_BUDGET - 1), k, most = 1;
	__u64 w;

	if (r->seen >= MG_READ_BUDGET)
		return 0;
	if (pos + 8 <= n && off <= MG_READ_BUDGET - 8) {
		w = *(const __u64 *)(buf + off);
		most = 8;
	} else {
		/* The buffer's last bytes: one (the zero bytes above it stop
		 * nothing). */
		w = buf[off];
	}
	k = mg_quiet_run(w, r->quiet);
	if (k > most)
		k = most;
	if (k > MG_READ_BUDGET - r->seen)
		k = MG_READ_BUDGET - r->seen;
	mg_reader_skip(r, k);
	return k;
}

/*
 * One step: a run of quiet bytes (a word at a time), or one byte through
 * the reader. The cursor lives in r->seen (read from memory, so the
 * verifier sees one unknown scalar at every step, as it did bpf_loop's
 * index); every step reads at least one byte, so n steps read everything.
 */
static long mg_feed_step(__u32 i, void *ctx)
{
	struct mg_feed *f = ctx;
	struct mg_reader *r = f->r;
	__u32 pos;
	int v;

	if (!r)
		return 1;
	pos = r->seen - f->base;
	if (pos >= f->n)
		return 1;
	/* A reader looking for signatures is never quiet (it reads every
	 * byte): the automaton first, then the reader. */
	if (r->sig_state && mg_sig_byte(r, f->buf[pos & (MG_READ_BUDGET - 1)])) {
		f->verdict = MG_READ_MINING;
		return 1;
	}
	if (r->quiet && mg_skip_quiet(r, f->buf, pos, f->n))
		return 0;
	/* Read again: both ways here then reach the byte with the same
	 * verifier state (one walk of the reader, not two). */
	pos = r->seen - f->base;
	v = mg_read_byte(r, f->buf[pos & (MG_READ_BUDGET - 1)]);
	if (v != MG_READ_MORE) {
		f->verdict = v;
		return 1;
	}
	/* A reader looking for signatures reads every byte. */
	r->quiet = r->sig_state ? 0 : mg_reader_quiet(r);
	return 0;
}

/* Reads buf[0..n) (n <= MG_READ_BUDGET). Returns a verdict. */
static __always_inline int mg_reader_feed(struct mg_reader *r, const __u8 *buf,
					  __u32 n)
{
	struct mg_feed f = { .r = r, .buf = buf, .verdict = MG_READ_MORE };

	if (n > MG_READ_BUDGET)
		n = MG_READ_BUDGET;
	f.n = n;
	f.base = r ? r->seen : 0;
	bpf_loop(n, mg_feed_step, &f, 0);
	if (f.verdict == MG_READ_MORE && mg_reader_spent(r))
		return MG_READ_DONE;
	return f.verdict;
}

#endif
