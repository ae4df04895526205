// SPDX-License-Identifier: GPL-2.0
/*
 * The behaviour detector's tuning signal (#24): a miner run as root asks the
 * host for more hash rate before it hashes. XMRig 6.x writes the per-node
 * sysfs `nr_hugepages` to reserve huge pages for RandomX, and with its MSR
 * mod loads `msr` with `allow_writes=on` and writes `/dev/cpu/N/msr`; other
 * miners write `vm.nr_hugepages` or switch the NMI watchdog off (what an
 * installer script does is counted against the script, which the detector
 * judges only if it is busy itself). In a container these writes usually fail (sysfs and
 * /proc/sys are read-only there), so what counts is the attempt: an open
 * for writing, seen at syscall entry, before the kernel refuses it.
 *
 * The open syscalls' entry tracepoints count, per process (thread group),
 * each open for writing whose last path component names one of those files,
 * for processes in a scope. Nothing is refused here (`open.msr` refuses MSR
 * devices); the detector reads the counts when it judges a process.
 *
 * Per-syscall tracepoints (tracefs ids), not the raw `sys_enter` tracepoint:
 * only the open syscalls pay, and an open for reading (most of them) stops
 * at the flags test. A path is matched as given (absolute or relative, the
 * name only), not resolved: a symlink to the file walks around this
 * counter, which XMRig and its forks do not use; the other signals do not
 * depend on it. io_uring opens, and 32-bit (compat) opens on x86-64, do not
 * pass these tracepoints.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

/* O_ACCMODE, include/uapi/asm-generic/fcntl.h: O_WRONLY 1, O_RDWR 2. */
#define MG_O_ACCMODE 3

/* What a tuning attempt was aimed at (the index into mg_tuning.counts;
 * src/behaviour/tuning.rs reads them in this order). */
enum mg_tune_kind {
	/* nr_hugepages, nr_hugepages_mempolicy, nr_overcommit_hugepages
	 * (the sysctls and the sysfs per-size and per-node files). */
	MG_TUNE_HUGEPAGES = 0,
	/* cpu/N/msr (/dev/cpu/N/msr). */
	MG_TUNE_MSR = 1,
	/* /sys/module/msr/parameters/allow_writes. */
	MG_TUNE_MSR_ALLOW_WRITES = 2,
	/* kernel.nmi_watchdog. */
	MG_TUNE_NMI_WATCHDOG = 3,
	MG_TUNE_KINDS = 4,
};

/* One process's attempts, and its start time, so that a reused pid does
 * not inherit them (userspace compares it with /proc/<pid>/stat). */
struct mg_tuning {
	__u64 start_boot_ns;
	__u32 counts[MG_TUNE_KINDS];
};

/* LRU: a host with more tuning processes than this forgets the oldest,
 * never refuses to count a new one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tgid */
	__type(value, struct mg_tuning);
} mg_tuning SEC(".maps");

/* A path is read in chunks this long, STRIDE apart: the chunks overlap by
 * more than the longest name matched, so the chunk holding the end of a
 * long path also holds the whole name and the '/' before it. */
#define MG_TUNE_CHUNK 256
#define MG_TUNE_STRIDE 224
/* PATH_MAX (4096) / STRIDE, rounded up: a longer path fails the open. */
#define MG_TUNE_CHUNKS 19
/* The path's last bytes looked at: more than the longest name and a '/'. */
#define MG_TUNE_TAIL 32

struct mg_tune_scratch {
	/* Never written: zeros before the path, so that a short path's tail
	 * is read at a fixed place with zeros where the path begins. */
	char pad[MG_TUNE_TAIL];
	char buf[MG_TUNE_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_tune_scratch);
} mg_tune_scratch SEC(".maps");

/* Reads the end of the user path into s->buf; returns how many bytes of it
 * are there (the path's end is at that index), or -1. */
static __always_inline int mg_read_path_end(const char *upath,
					    struct mg_tune_scratch *s)
{
	for (int i = 0; i < MG_TUNE_CHUNKS; i++) {
		long n = bpf_probe_read_user_str(s->buf, MG_TUNE_CHUNK,
						 upath + i * MG_TUNE_STRIDE);

		if (n <= 0)
			return -1;
		if (n < MG_TUNE_CHUNK)
			return (int)n - 1;
	}
	return -1;
}

/* Whether the path whose last MG_TUNE_TAIL bytes are `tail` (zeros before
 * a shorter path) ends in the component `name` (`nlen` bytes, a constant
 * once inlined, so every index below is one). */
static __always_inline bool mg_last_is(const char *tail, const char *name,
				       int nlen)
{
	char before = tail[MG_TUNE_TAIL - nlen - 1];

#pragma unroll
	for (int k = 0; k < nlen; k++)
		if (tail[MG_TUNE_TAIL - nlen + k] != name[k])
			return false;
	return before == '/' || before == 0;
}

/* Whether the path ends in cpu/N/msr (N: 1 to 4 digits). */
static __always_inline bool mg_cpu_msr(const char *tail)
{
	if (!mg_last_is(tail, "msr", 3))
		return false;
#pragma unroll
	for (int d = 1; d <= 4; d++) {
		/* The first digit, if N has d digits. */
		int at = MG_TUNE_TAIL - 4 - d;
		char c = tail[at];

		if (c < '0' || c > '9')
			return false;
		if (tail[at - 1] == '/' && tail[at - 2] == 'u' &&
		    tail[at - 3] == 'p' && tail[at - 4] == 'c')
			return true;
	}
	return false;
}

/* The tuning file the path names, or -1. */
static __always_inline int mg_tune_kind_of(const char *tail)
{
	if (mg_last_is(tail, "nr_hugepages", 12) ||
	    mg_last_is(tail, "nr_hugepages_mempolicy", 22) ||
	    mg_last_is(tail, "nr_overcommit_hugepages", 23))
		return MG_TUNE_HUGEPAGES;
	if (mg_last_is(tail, "allow_writes", 12))
		return MG_TUNE_MSR_ALLOW_WRITES;
	if (mg_last_is(tail, "nmi_watchdog", 12))
		return MG_TUNE_NMI_WATCHDOG;
	if (mg_cpu_msr(tail))
		return MG_TUNE_MSR;
	return -1;
}

/* Counts one attempt of the current process. */
static __always_inline void mg_count_tuning(int kind)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 start = BPF_CORE_READ(task, group_leader, start_boottime);
	struct mg_tuning fresh = { .start_boot_ns = start };
	struct mg_tuning *t = bpf_map_lookup_elem(&mg_tuning, &tgid);

	if (t && t->start_boot_ns != start) {
		/* A reused pid: the earlier process's counts are not its own.
		 * Reset in place: replacing the element would free it under
		 * another thread's add. */
		t->start_boot_ns = start;
		for (int k = 0; k < MG_TUNE_KINDS; k++)
			t->counts[k] = 0;
	}
	if (!t) {
		bpf_map_update_elem(&mg_tuning, &tgid, &fresh, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&mg_tuning, &tgid);
		if (!t)
			return;
	}
	__sync_fetch_and_add(&t->counts[kind & (MG_TUNE_KINDS - 1)], 1);
}

/* An open of `upath` with `flags`: counted when it is for writing, by a
 * process in a scope, of a tuning file. */
static __always_inline void mg_tune_open(const char *upath, __u64 flags)
{
	struct mg_tune_scratch *s;
	char tail[MG_TUNE_TAIL];
	__u32 zero = 0, end;
	int len, kind;

	if (!(flags & MG_O_ACCMODE) || !upath)
		return;
	if (!mg_current_scope())
		return;
	s = bpf_map_lookup_elem(&mg_tune_scratch, &zero);
	if (!s)
		return;
	len = mg_read_path_end(upath, s);
	if (len <= 0 || len >= MG_TUNE_CHUNK)
		return;
	/* The tail ends at buf[len]: pad + len in the whole value. The mask,
	 * kept from the compiler, bounds the offset for the verifier. */
	end = (__u32)len;
	asm volatile("%0 &= 255" : "+r"(end));
	if (bpf_probe_read_kernel(tail, sizeof(tail), (char *)s + end))
		return;
	kind = mg_tune_kind_of(tail);
	if (kind >= 0)
		mg_count_tuning(kind);
}

/* openat(dfd, path, flags, mode) */
SEC("tracepoint/syscalls/sys_enter_openat")
int mg_tune_openat(struct trace_event_raw_sys_enter *ctx)
{
	mg_tune_open((const char *)ctx->args[1], ctx->args[2]);
	return 0;
}

/* openat2(dfd, path, how, size): how->flags is its first member. */
SEC("tracepoint/syscalls/sys_enter_openat2")
int mg_tune_openat2(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;

	if (bpf_probe_read_user(&flags, sizeof(flags), (const void *)ctx->args[2]))
		return 0;
	mg_tune_open((const char *)ctx->args[1], flags);
	return 0;
}

/* open(path, flags, mode): x86-64 and a few others, not arm64. */
SEC("tracepoint/syscalls/sys_enter_open")
int mg_tune_open_legacy(struct trace_event_raw_sys_enter *ctx)
{
	mg_tune_open((const char *)ctx->args[0], ctx->args[1]);
	return 0;
}

/* creat(path, mode) = open(path, O_CREAT|O_WRONLY|O_TRUNC, mode). */
SEC("tracepoint/syscalls/sys_enter_creat")
int mg_tune_creat(struct trace_event_raw_sys_enter *ctx)
{
	mg_tune_open((const char *)ctx->args[0], 1 /* O_WRONLY */);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
