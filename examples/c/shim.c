/*
 * A container-shim-like use of the minerguard C API: make a fresh cgroup,
 * enforce a profile on it, run a command inside, print the events, then
 * remove the policy and the cgroup. When the profile has seccomp rules, the
 * command also runs under the profile's seccomp filter (exported as BPF
 * before the fork, installed in the child right before exec).
 *
 *   shim [-b auto|lsm|cgroup] PROFILE -- CMD [ARGS...]
 *
 * Exits with the command's status (128+n when killed by signal n). Needs
 * root. Build (from the repository root, after `cargo build`):
 *
 *   cc -Wall -Werror -I include examples/c/shim.c -o shim \
 *      target/debug/libminerguard.a -lseccomp -lelf -lz -lpthread -ldl -lm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "minerguard.h"

static void fail(const char *what, mg_result rc) {
  fprintf(stderr, "shim: %s: %s: %s\n", what, mg_result_name(rc),
          mg_last_error());
}

/* The cgroup v2 mount point, from /proc/self/mountinfo (fields: id parent
 * dev root mountpoint options... - fstype source superoptions). */
static int cgroup2_mount(char *out, size_t len) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  if (!f) return -1;
  char line[4096];
  int found = -1;
  while (found < 0 && fgets(line, sizeof line, f)) {
    char *sep = strstr(line, " - ");
    if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0) continue;
    char mountpoint[4096];
    if (sscanf(line, "%*s %*s %*s %*s %4095s", mountpoint) != 1) continue;
    /* mountinfo escapes spaces and the like as \ooo. */
    size_t o = 0;
    for (size_t i = 0; mountpoint[i] && o + 1 < len; i++) {
      unsigned v;
      if (mountpoint[i] == '\\' && sscanf(mountpoint + i + 1, "%3o", &v) == 1) {
        out[o++] = (char)v;
        i += 3;
      } else {
        out[o++] = mountpoint[i];
      }
    }
    out[o] = '\0';
    found = 0;
  }
  fclose(f);
  return found;
}

static const char *action_name(mg_action a) {
  switch (a) {
    case MG_ACTION_AUDIT: return "audit";
    case MG_ACTION_DENY: return "deny";
    case MG_ACTION_KILL: return "kill";
    case MG_ACTION_KILL_CONTAINER: return "kill-container";
  }
  return "?";
}

static void print_event(const mg_event *ev) {
  printf("shim: event rule=%s profile=%s action=%s requested=%s pid=%u comm=%s",
         ev->rule, ev->profile, action_name(ev->action),
         action_name(ev->requested), ev->tgid, ev->comm);
  if (ev->kind == MG_RULE_KIND_EXEC) {
    printf(" kind=exec path=%s", ev->path);
  } else if (ev->kind == MG_RULE_KIND_CONNECT) {
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(ev->family, ev->ip, ip, sizeof ip);
    printf(" kind=connect dst=%s port=%u proto=%s", ip, ev->port,
           ev->protocol == 6 ? "tcp" : ev->protocol == 17 ? "udp" : "other");
  } else {
    printf(" kind=%u", (unsigned)ev->kind);
  }
  printf(" ppid=%u pname=%s cmdline=[%s]", ev->ppid, ev->pname, ev->cmdline);
  if (ev->pattern[0]) printf(" pattern=%s", ev->pattern);
  if (ev->killed_cgroup[0]) printf(" killed_cgroup=%s", ev->killed_cgroup);
  if (ev->kill_error[0]) printf(" kill_error=\"%s\"", ev->kill_error);
  printf(" cgroup_id=%llu\n", (unsigned long long)ev->cgroup_id);
  fflush(stdout);
}

/* Prints events until none arrives for `quiet_ms`. */
static void drain(mg_events *events, uint32_t quiet_ms) {
  mg_event ev;
  mg_result rc;
  while ((rc = mg_events_receive(events, quiet_ms, &ev)) == MG_OK) print_event(&ev);
  if (rc != MG_ERR_TIMEOUT) fail("receiving events", rc);
}

/* Kills what is left in the cgroup and removes it (EBUSY until the last
 * task has exited). */
static int remove_cgroup(const char *path) {
  char kill_path[4200];
  snprintf(kill_path, sizeof kill_path, "%s/cgroup.kill", path);
  int fd = open(kill_path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (write(fd, "1", 1) != 1) perror("shim: cgroup.kill");
    close(fd);
  }
  for (int i = 0; i < 500; i++) {
    if (rmdir(path) == 0 || errno == ENOENT) return 0;
    if (errno != EBUSY) break;
    usleep(10000);
  }
  fprintf(stderr, "shim: removing %s: %s\n", path, strerror(errno));
  return -1;
}

static uint32_t backend_arg(const char *s) {
  if (strcmp(s, "lsm") == 0) return MG_BACKEND_LSM;
  if (strcmp(s, "cgroup") == 0) return MG_BACKEND_CGROUP;
  if (strcmp(s, "auto") == 0) return MG_BACKEND_AUTO;
  fprintf(stderr, "shim: unknown backend %s (auto, lsm, cgroup)\n", s);
  exit(2);
}

int main(int argc, char **argv) {
  uint32_t backend = MG_BACKEND_AUTO;
  int i = 1;
  if (i + 1 < argc && strcmp(argv[i], "-b") == 0) {
    backend = backend_arg(argv[i + 1]);
    i += 2;
  }
  if (i + 2 >= argc || strcmp(argv[i + 1], "--") != 0) {
    fprintf(stderr, "usage: %s [-b auto|lsm|cgroup] PROFILE -- CMD [ARGS...]\n", argv[0]);
    return 2;
  }
  const char *profile_path = argv[i];
  char **cmd = argv + i + 2;

  char mount[4096];
  if (cgroup2_mount(mount, sizeof mount) != 0) {
    fprintf(stderr, "shim: no cgroup2 mount in /proc/self/mountinfo\n");
    return 1;
  }
  char cgroup[4200];
  snprintf(cgroup, sizeof cgroup, "%s/minerguard-shim-%d", mount, (int)getpid());

  int status = 1;
  mg_profile *profile = NULL;
  mg_enforcer *enforcer = NULL;
  mg_events *events = NULL;
  uint64_t handle = 0;
  int made_cgroup = 0;
  uint8_t *filter = NULL;
  size_t filter_size = 0;
  mg_result rc;

  if ((rc = mg_profile_from_file(profile_path, &profile)) != MG_OK) {
    fail("loading the profile", rc);
    /* Every problem, with its field path. */
    for (size_t d = 0; d < mg_last_error_diagnostic_count(); d++) {
      mg_diagnostic diag;
      if (mg_last_error_diagnostic(d, &diag) == MG_OK)
        fprintf(stderr, "shim:   %s (line %u): %s\n", diag.field, diag.line, diag.message);
    }
    goto out;
  }
  /* The seccomp filter, built now: between fork and exec the child may only
   * make async-signal-safe calls, so it just hands these bytes to the kernel. */
  bool has_seccomp = false;
  if ((rc = mg_profile_has_seccomp(profile, &has_seccomp)) != MG_OK) {
    fail("reading the profile's seccomp rules", rc);
    goto out;
  }
  if (has_seccomp) {
    rc = mg_profile_seccomp_bpf(profile, NULL, 0, &filter_size);
    if (rc != MG_ERR_BUFFER_TOO_SMALL || !(filter = malloc(filter_size)) ||
        (rc = mg_profile_seccomp_bpf(profile, filter, filter_size, NULL)) != MG_OK) {
      fail("exporting the seccomp filter", rc);
      goto out;
    }
  }
  if ((rc = mg_enforcer_new(backend, &enforcer)) != MG_OK) {
    fail("loading the enforcer", rc);
    goto out;
  }
  if ((rc = mg_events_new(enforcer, &events)) != MG_OK) {
    fail("opening the event stream", rc);
    goto out;
  }
  if (mkdir(cgroup, 0755) != 0) {
    fprintf(stderr, "shim: mkdir %s: %s\n", cgroup, strerror(errno));
    goto out;
  }
  made_cgroup = 1;
  if ((rc = mg_enforcer_apply_cgroup(enforcer, profile, cgroup, &handle)) != MG_OK) {
    fail("applying the profile", rc);
    goto out;
  }
  mg_backend kind = MG_BACKEND_NONE;
  mg_enforcer_backend(enforcer, &kind);
  printf("shim: backend=%s cgroup=%s handle=%llu\n", mg_backend_name(kind), cgroup,
         (unsigned long long)handle);
  if (filter) printf("shim: seccomp instructions=%zu\n", filter_size / sizeof(struct sock_filter));
  fflush(stdout);

  char procs_path[4300];
  snprintf(procs_path, sizeof procs_path, "%s/cgroup.procs", cgroup);
  int procs = open(procs_path, O_WRONLY | O_CLOEXEC);
  if (procs < 0) {
    fprintf(stderr, "shim: open %s: %s\n", procs_path, strerror(errno));
    goto out;
  }
  pid_t child = fork();
  if (child < 0) {
    perror("shim: fork");
    close(procs);
    goto out;
  }
  if (child == 0) {
    /* Join the cgroup before exec: the command is covered from its first
     * instruction. */
    if (write(procs, "0", 1) != 1) {
      fprintf(stderr, "shim: joining the cgroup: %s\n", strerror(errno));
      _exit(125);
    }
    /* Then the seccomp filter, with no_new_privs (needed without
     * CAP_SYS_ADMIN, and what mg_profile_seccomp_install() sets too). */
    if (filter) {
      struct sock_fprog prog = {
          .len = (unsigned short)(filter_size / sizeof(struct sock_filter)),
          .filter = (struct sock_filter *)(void *)filter,
      };
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
          syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        fprintf(stderr, "shim: installing the seccomp filter: %s\n", strerror(errno));
        _exit(125);
      }
    }
    execvp(cmd[0], cmd);
    fprintf(stderr, "shim: exec %s: %s\n", cmd[0], strerror(errno));
    _exit(126);
  }
  close(procs);

  /* Print events while the command runs. */
  int wstatus = 0;
  for (;;) {
    pid_t w = waitpid(child, &wstatus, WNOHANG);
    if (w == child) break;
    if (w < 0 && errno != EINTR) {
      perror("shim: waitpid");
      break;
    }
    mg_event ev;
    rc = mg_events_receive(events, 50, &ev);
    if (rc == MG_OK)
      print_event(&ev);
    else if (rc != MG_ERR_TIMEOUT)
      fail("receiving events", rc);
  }
  drain(events, 500);
  status = WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : WEXITSTATUS(wstatus);
  printf("shim: exit=%d\n", status);

  mg_drops drops;
  if (mg_enforcer_drops(enforcer, &drops) == MG_OK)
    printf("shim: dropped ring=%llu channel=%llu\n", (unsigned long long)drops.ring,
           (unsigned long long)drops.channel);

out:
  if (handle && (rc = mg_enforcer_remove(enforcer, handle)) != MG_OK) {
    fail("removing the policy", rc);
    status = status ? status : 1;
  }
  if (made_cgroup && remove_cgroup(cgroup) != 0) status = status ? status : 1;
  mg_events_free(events);
  mg_enforcer_free(enforcer);
  mg_profile_free(profile);
  free(filter);
  fflush(stdout);
  return status;
}
