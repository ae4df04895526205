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
