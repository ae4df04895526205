/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The open file behind a descriptor of the current task, for syscall
 * tracepoints that get descriptors (mmap's, clone3's cgroup). */
#ifndef MINERGUARD_FD_FILE_H
#define MINERGUARD_FD_FILE_H

#include "common.h"

/* The open file behind descriptor `fd` of the current task, or NULL. */
static __always_inline struct file *mg_fd_file(unsigned long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

#endif
