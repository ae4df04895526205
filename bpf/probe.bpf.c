// SPDX-License-Identifier: GPL-2.0
/*
 * Trivial programs that src/probe.rs loads one at a time (autoload is
 * switched per program) to learn what this kernel really allows: being listed
 * is not enough, e.g. a kernel may list `bpf` in its LSMs and still refuse
 * BPF-LSM programs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "event.h"
#include "proc_info.h"

/* Never written: puts struct mg_event into this object's BTF so the
 * skeleton's types module carries it for the Rust layout test. */
struct mg_event mg_event_layout = {};

SEC("lsm/socket_connect")
int BPF_PROG(probe_lsm, struct socket *sock, struct sockaddr *addr, int len,
	     int ret)
{
	return ret;
}

SEC("cgroup/connect4")
int probe_cgroup_connect(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect4")
int probe_cgroup_signal(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == 0xffff)
		bpf_send_signal(0);
	return 1;
}

SEC("sk_msg")
int probe_skmsg_signal(struct sk_msg_md *msg)
{
	if (msg->size == 0xffffffff)
		bpf_send_signal(0);
	return 1;
}

SEC("sk_msg")
int probe_skmsg_comm(struct sk_msg_md *msg)
{
	char comm[16];

	bpf_get_current_comm(comm, sizeof(comm));
	return 1;
}

/* Scratch for the task probes: the same mg_fill_proc the events use, so
 * the verifier judges exactly the code that runs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mg_event);
} probe_proc_scratch SEC(".maps");

static __always_inline void probe_proc(void)
{
	__u32 zero = 0;
	struct mg_event *e = bpf_map_lookup_elem(&probe_proc_scratch, &zero);

	if (e)
		mg_fill_proc(e);
}

/* May these program types read the current task (events' ppid, parent
 * name and command line)? One per type that emits events under
 * MG_PROC_GUARDED. */
SEC("cgroup/connect4")
int probe_proc_sock_addr(struct bpf_sock_addr *ctx)
{
	probe_proc();
	return 1;
}

SEC("cgroup/setsockopt")
int probe_proc_sockopt(struct bpf_sockopt *ctx)
{
	probe_proc();
	return 1;
}

SEC("cgroup/sock_create")
int probe_proc_sock(struct bpf_sock *sk)
{
	probe_proc();
	return 1;
}

SEC("cgroup/dev")
int probe_proc_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	probe_proc();
	return 1;
}

SEC("sockops")
int probe_proc_sockops(struct bpf_sock_ops *skops)
{
	probe_proc();
	return 1;
}

SEC("sk_msg")
int probe_proc_skmsg(struct sk_msg_md *msg)
{
	probe_proc();
	return 1;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_exec_tp, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	return 0;
}

SEC("sockops")
int probe_sockops(struct bpf_sock_ops *skops)
{
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
