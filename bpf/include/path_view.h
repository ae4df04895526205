/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * Paths as the task sees them: a file's path from the current task's root
 * (task->fs->root), crossing mounts, so `/tmp` in a profile means every
 * container's own /tmp and never the host directory a container's rootfs
 * happens to live under. exec.dirs, exec.path_prefixes and exec.allow_only
 * are matched on it, and exec events report it.
 *
 * The path is built right to left (as the kernel's d_path does) by one
 * bpf_loop over dentries and mounts, then read left to right once: at each
 * '/', the prefix before it is looked up as a directory entry of the policy
 * (a hash lookup on the exact bytes: no hashing of our own that a crafted
 * name could collide with). A walk that cannot finish (deeper than
 * MG_WALK_STEPS, longer than MG_PATH_BUF) is reported as unresolved, and
 * the caller refuses: an attacker cannot nest a miner out of reach.
 */
#ifndef MINERGUARD_PATH_VIEW_H
#define MINERGUARD_PATH_VIEW_H

#include "common.h"

/* Bytes a built path may take (PATH_MAX), and dentries + mounts walked. */
#define MG_PATH_BUF 4096
#define MG_WALK_STEPS 2048
/* Longest name of one path component (NAME_MAX). */
#define MG_NAME_MAX 255

/* Per-CPU scratch: the path is written into buf ending at MG_PATH_BUF - 1
 * (a NUL); buf is twice that so every masked write stays inside. */
struct mg_path_scratch {
	char buf[2 * MG_PATH_BUF];
	struct mg_path_key key;
	/* The scan's verdict so far. Kept here, not in the bpf_loop context
	 * on the stack: Linux 6.1's verifier checks a callback once, with the
	 * context's first values, and would hard-wire branches on them
	 * (a first "no match" made every later lookup replace the verdict). */
	struct mg_rule_ref deny;
	__u8 has_deny;
	__u8 allowed;
	/* The walk's write position, for the same reason (its first value,
	 * MG_PATH_BUF - 1, made 6.1 drop the overflow check). */
	__u32 pos;
	/* mg_dots_step: the current component's length and dots in it, and
	 * whether a `.` or `..` component was seen. */
	__u32 comp;
	__u32 dots;
	__u8 dotted;
	/* mg_path_scan_step: bytes in the key, and whether the last byte taken
	 * was a '/' (repeated slashes count once, as the kernel reads them). */
	__u32 klen;
	__u8 slash;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_path_scratch);
} mg_path_scratch SEC(".maps");

struct mg_walk {
	struct dentry *d;
	struct mount *m;
	struct dentry *root_d;
	struct mount *root_m;
	struct mg_path_scratch *s; /* s->pos: first byte of the path so far */
	__u8 state; /* 0 walking, 1 done, 2 unresolved */
};

static __always_inline struct mount *mg_real_mount(struct vfsmount *v)
{
	return (struct mount *)((void *)v - bpf_core_field_offset(struct mount, mnt));
}

static long mg_walk_step(__u32 i, void *data)
{
	struct mg_walk *w = data;
	struct dentry *d = w->d, *parent;
	struct mount *m = w->m;
	struct mg_path_scratch *s = w->s;
	const unsigned char *name;
	__u32 len, pos;

	if (d == w->root_d && m == w->root_m) {
		w->state = 1;
		return 1;
	}
	if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
		struct mount *up = BPF_CORE_READ(m, mnt_parent);

		/* The top of a mount tree: the task's root is not above the
		 * file (another namespace's file, an internal mount such as a
		 * memfd's). The path is the one from that top. */
		if (!up || up == m) {
			w->state = 1;
			return 1;
		}
		w->d = BPF_CORE_READ(m, mnt_mountpoint);
		w->m = up;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (!parent || parent == d) {
		w->state = 1;
		return 1;
	}
	len = BPF_CORE_READ(d, d_name.len);
	name = BPF_CORE_READ(d, d_name.name);
	pos = s->pos;
	if (len > MG_NAME_MAX || pos < len + 1 || pos >= MG_PATH_BUF) {
		w->state = 2;
		return 1;
	}
	pos -= len;
	if (bpf_probe_read_kernel(s->buf + (pos & (MG_PATH_BUF - 1)),
				  len & MG_NAME_MAX, name)) {
		w->state = 2;
		return 1;
	}
	pos -= 1;
	s->buf[pos & (MG_PATH_BUF - 1)] = '/';
	s->pos = pos;
	w->d = parent;
	return 0;
}

/*
 * Builds the path of (mnt, dentry) from the current task's root into
 * s->buf. Returns the offset of its first byte (the path ends at
 * MG_PATH_BUF - 1, NUL-terminated), or -1 when the walk cannot finish.
 */
static __always_inline int mg_path_of_dentry(struct vfsmount *mnt,
					     struct dentry *dentry,
					     struct mg_path_scratch *s)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mg_walk w = {};
	__u32 pos;

	w.d = dentry;
	w.m = mg_real_mount(mnt);
	w.root_d = BPF_CORE_READ(task, fs, root.dentry);
	w.root_m = mg_real_mount(BPF_CORE_READ(task, fs, root.mnt));
	w.s = s;
	s->pos = MG_PATH_BUF - 1;
	s->buf[MG_PATH_BUF - 1] = 0;
	bpf_loop(MG_WALK_STEPS, mg_walk_step, &w, 0);
	if (w.state != 1)
		return -1;
	pos = s->pos;
	if (pos >= MG_PATH_BUF)
		return -1;
	if (pos == MG_PATH_BUF - 1) {
		/* The root itself. */
		pos -= 1;
		s->buf[pos & (MG_PATH_BUF - 1)] = '/';
	}
	return pos & (MG_PATH_BUF - 1);
}

/* mg_path_of_dentry for an open file. */
static __always_inline int mg_path_of(struct file *file,
				      struct mg_path_scratch *s)
{
	return mg_path_of_dentry(BPF_CORE_READ(file, f_path.mnt),
				 BPF_CORE_READ(file, f_path.dentry), s);
}

/* What the path entries of a policy say about one file. */
struct mg_path_verdict {
	struct mg_rule_ref *deny; /* strongest exec.dirs / path_prefixes match */
	bool allowed;             /* an exec.allow_only entry covers it */
	bool unresolved;          /* the path could not be built */
};

struct mg_path_scan {
	struct mg_path_scratch *s;
	__u32 start;
	__u32 len;
	bool deny;
	bool allow;
};

static __always_inline struct mg_rule_ref *
mg_path_lookup(struct mg_path_key *key, __u8 kind)
{
	key->kind = kind;
	return bpf_map_lookup_elem(&mg_exec_paths, key);
}

/* One byte of the path, left to right: at a '/', the prefix before it (a
 * directory above the file) is looked up; then the byte joins the key. */
static long mg_path_scan_step(__u32 i, void *data)
{
	struct mg_path_scan *sc = data;
	struct mg_path_scratch *s = sc->s;
	struct mg_path_key *key = &s->key;
	__u32 at = s->klen;
	char c;

	if (i >= sc->len || at >= MG_PREFIX_LEN)
		return 1;
	c = s->buf[(sc->start + i) & (2 * MG_PATH_BUF - 1)];
	if (c == '/' && s->slash)
		return 0;
	s->slash = c == '/';
	if (c == '/') {
		struct mg_rule_ref *ref;

		if (sc->deny) {
			ref = mg_path_lookup(key, MG_PATH_DIR);
			if (ref && (!s->has_deny ||
				    mg_rank(ref->action) > mg_rank(s->deny.action))) {
				s->deny = *ref;
				s->has_deny = 1;
			}
		}
		if (sc->allow && !s->allowed &&
		    mg_path_lookup(key, MG_PATH_ALLOW_DIR))
			s->allowed = 1;
	}
	key->path[at & (MG_PREFIX_LEN - 1)] = c;
	s->klen = at + 1;
	return 0;
}

/* Clears the key and the scan's verdict for a new scan. */
static __always_inline void mg_path_scan_reset(struct mg_path_scratch *s,
					       __u32 policy_id)
{
	__builtin_memset(&s->key, 0, sizeof(s->key));
	s->key.policy_id = policy_id;
	s->has_deny = 0;
	s->allowed = 0;
	s->klen = 0;
	s->slash = 0;
}

/*
 * Matches `file`'s path (from the task's root) against the policy's
 * directory (`deny`) and allow-list (`allow`) entries. The path is left in
 * s->buf at *start (for the event) unless unresolved.
 */
static __always_inline struct mg_path_verdict
mg_path_match(__u32 policy_id, struct file *file, bool deny, bool allow,
	      struct mg_path_scratch *s, int *start)
{
	struct mg_path_verdict v = {};
	struct mg_path_scan sc = {};
	int at;

	at = mg_path_of(file, s);
	*start = at;
	if (at < 0) {
		v.unresolved = true;
		return v;
	}
	mg_path_scan_reset(s, policy_id);
	sc.s = s;
	sc.start = at;
	sc.len = MG_PATH_BUF - 1 - at;
	sc.deny = deny;
	sc.allow = allow;
	bpf_loop(MG_PREFIX_LEN, mg_path_scan_step, &sc, 0);
	v.deny = s->has_deny ? &s->deny : NULL;
	v.allowed = s->allowed;
	/* The whole path, when it fits a key: an allowed file. */
	if (allow && !v.allowed && sc.len < MG_PREFIX_LEN &&
	    mg_path_lookup(&s->key, MG_PATH_ALLOW_FILE))
		v.allowed = true;
	return v;
}

/* One byte of a path named by a string: a `.` or `..` component marks it
 * (the string is not what the kernel resolved, so it cannot be matched). */
struct mg_dots_scan {
	struct mg_path_scratch *s;
	__u32 start;
	__u32 len;
};

static long mg_dots_step(__u32 i, void *data)
{
	struct mg_dots_scan *d = data;
	struct mg_path_scratch *s = d->s;
	char c = i < d->len ? s->buf[(d->start + i) & (2 * MG_PATH_BUF - 1)] : '/';

	if (c == '/') {
		if (s->comp && s->comp == s->dots && s->comp <= 2)
			s->dotted = 1;
		s->comp = 0;
		s->dots = 0;
	} else {
		s->comp += 1;
		if (c == '.')
			s->dots += 1;
	}
	return i >= d->len ? 1 : 0;
}

/* 2 when the kernel string `name` starts with "./" (a second "./" after
 * it is a `.` component: refused as unresolved). */
static __always_inline __u32 mg_dot_slash(const char *name)
{
	char head[2] = {};

	bpf_probe_read_kernel(head, sizeof(head), name);
	return ((head[0] == '.') & (head[1] == '/')) ? 2 : 0;
}

/*
 * exec.dirs for a file known only by the path a task named it with (a `#!`
 * script on the cgroup backend, whose file is released before the exec
 * tracepoint runs): the string as given when absolute, else after the
 * working directory's path from the task's root. Symlinks in it are not
 * resolved. *start gets the path's offset in s->buf (for the event). A
 * string with a `.` or `..` component, or too long, is unresolved.
 */
static __always_inline struct mg_path_verdict
mg_named_path_match(__u32 policy_id, const char *name,
		    struct mg_path_scratch *s, int *start)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mg_path_verdict v = {};
	struct mg_path_scan sc = {};
	struct mg_dots_scan d = {};
	char first = 0;
	__u32 skip;
	long n;
	int at;

	*start = -1;
	bpf_probe_read_kernel(&first, 1, name);
	if (first == '/') {
		n = bpf_probe_read_kernel_str(s->buf + MG_PATH_BUF, MG_PATH_BUF, name);
		at = MG_PATH_BUF;
		if (n <= 1) {
			v.unresolved = true;
			return v;
		}
		sc.len = n - 1;
	} else {
		at = mg_path_of_dentry(BPF_CORE_READ(task, fs, pwd.mnt),
				       BPF_CORE_READ(task, fs, pwd.dentry), s);
		skip = mg_dot_slash(name);
		n = bpf_probe_read_kernel_str(s->buf + MG_PATH_BUF, MG_PATH_BUF,
					      name + (skip & 3));
		if (at < 0 || n <= 1) {
			v.unresolved = true;
			return v;
		}
		/* The working directory ends at MG_PATH_BUF - 1: join there
		 * (the scan reads the root's "//" as one '/'). */
		s->buf[MG_PATH_BUF - 1] = '/';
		sc.len = (MG_PATH_BUF - 1 - at) + 1 + (n - 1);
	}
	if (n >= MG_PATH_BUF) {
		v.unresolved = true;
		return v;
	}
	*start = at;
	s->comp = 0;
	s->dots = 0;
	s->dotted = 0;
	d.s = s;
	d.start = at;
	d.len = sc.len;
	bpf_loop(2 * MG_PATH_BUF, mg_dots_step, &d, 0);
	if (s->dotted) {
		v.unresolved = true;
		return v;
	}
	mg_path_scan_reset(s, policy_id);
	sc.s = s;
	sc.start = at;
	sc.deny = true;
	/* Every byte may be a repeated '/': scan the whole string. */
	bpf_loop(2 * MG_PATH_BUF, mg_path_scan_step, &sc, 0);
	v.deny = s->has_deny ? &s->deny : NULL;
	return v;
}

#endif
