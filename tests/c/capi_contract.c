/*
 * The C API's contract, checked from C: every misuse is a result code plus
 * a message, never a crash. Prints TAP-style `ok N - ...` / `not ok N - ...`
 * lines and exits 1 if any check failed.
 *
 *   capi_contract                         checks that need no kernel
 *   capi_contract CGROUP_PATH BACKEND     also enforcer checks, scoped to
 *                                         CGROUP_PATH (made by the caller)
 *   capi_contract CGROUP_PATH BACKEND INSTANCE
 *                                         also a pinned instance of that
 *                                         name (the caller removes it if a
 *                                         failed check leaves it behind)
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "minerguard.h"

static int checks, failures;

static void check(int ok, const char *what) {
  checks++;
  printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, what);
  if (!ok) {
    failures++;
    printf("#   last error: %s: %s\n", mg_result_name(mg_last_error_code()), mg_last_error());
  }
}

static int has(const char *haystack, const char *needle) {
  return haystack && strstr(haystack, needle) != NULL;
}

static void handles_and_pointers(void) {
  mg_profile *p = (mg_profile *)0x1;
  check(mg_profile_new(NULL, &p) == MG_ERR_NULL_POINTER, "NULL name is MG_ERR_NULL_POINTER");
  check(p == NULL, "a failed constructor sets *out to NULL");
  check(has(mg_last_error(), "`name` must not be NULL"), "the message names the argument");
  check(mg_profile_new("x", NULL) == MG_ERR_NULL_POINTER, "NULL out-pointer is MG_ERR_NULL_POINTER");

  check(mg_profile_new("x", &p) == MG_OK && p != NULL, "mg_profile_new");
  check(strcmp(mg_last_error(), "") == 0 && mg_last_error_code() == MG_OK,
        "a successful call clears the last error");
  check(mg_profile_free(p) == MG_OK, "mg_profile_free");
  check(mg_profile_validate(p) == MG_ERR_INVALID_HANDLE, "use after free is MG_ERR_INVALID_HANDLE");
  check(has(mg_last_error(), "freed already"), "use after free says so");
  check(mg_profile_free(p) == MG_ERR_INVALID_HANDLE, "double free is reported, not undefined");
  check(mg_profile_free(NULL) == MG_OK, "free(NULL) is a no-op");
  check(mg_enforcer_free(NULL) == MG_OK && mg_events_free(NULL) == MG_OK,
        "every free accepts NULL");
  check(mg_profile_validate(NULL) == MG_ERR_NULL_POINTER, "NULL handle is MG_ERR_NULL_POINTER");
  check(mg_profile_validate((mg_profile *)(uintptr_t)0xdead0) == MG_ERR_INVALID_HANDLE,
        "a forged handle is MG_ERR_INVALID_HANDLE");

  mg_profile *q = NULL;
  mg_profile_new("y", &q);
  check(mg_enforcer_remove((mg_enforcer *)q, 1) == MG_ERR_INVALID_HANDLE,
        "a profile passed as an enforcer is MG_ERR_INVALID_HANDLE");
  mg_event ev;
  check(mg_events_try_receive((mg_events *)q, &ev) == MG_ERR_INVALID_HANDLE,
        "a profile passed as an event stream is MG_ERR_INVALID_HANDLE");
  check(mg_events_receive(NULL, 0, &ev) == MG_ERR_NULL_POINTER, "receive from NULL");
  check(mg_profile_set_mode(q, 7) == MG_ERR_INVALID_ARGUMENT, "unknown mode value");
  const char *names[] = {"xmrig"};
  check(mg_profile_add_exec_names(q, "r", 9, names, 1) == MG_ERR_INVALID_ARGUMENT,
        "unknown action value");
  check(mg_profile_add_exec_names(q, "r", MG_ACTION_DENY, NULL, 1) == MG_ERR_NULL_POINTER,
        "NULL array with a count");
  const char *with_null[] = {"a", NULL};
  check(mg_profile_add_exec_names(q, "r", MG_ACTION_DENY, with_null, 2) == MG_ERR_NULL_POINTER &&
            has(mg_last_error(), "names[1]"),
        "a NULL element names its index");
  size_t n = 99;
  check(mg_profile_rule_count(q, &n) == MG_OK && n == 0, "failed adds leave the profile unchanged");
  mg_profile_free(q);
}

static void utf8(void) {
  mg_profile *p = NULL;
  check(mg_profile_new("bad\xff", &p) == MG_ERR_INVALID_UTF8 && p == NULL,
        "invalid UTF-8 name is MG_ERR_INVALID_UTF8");
  check(has(mg_last_error(), "offset 3"), "the message gives the offset");
  const char text[] = "apiVersion: minerguard/v1\nname: \xc3\x28\n";
  check(mg_profile_from_text(text, sizeof text - 1, &p) == MG_ERR_INVALID_UTF8,
        "invalid UTF-8 profile text");
  mg_profile_new("u", &p);
  const char *names[] = {"ok", "\xe2\x82"};
  check(mg_profile_add_exec_names(p, "r", MG_ACTION_DENY, names, 2) == MG_ERR_INVALID_UTF8 &&
            has(mg_last_error(), "names[1]"),
        "invalid UTF-8 list element names its index");
  mg_profile_free(p);
}

static void profiles(void) {
  mg_profile *p = NULL;
  const char bad_port[] =
      "apiVersion: minerguard/v1\nname: t\nrules:\n"
      "  - name: pool\n    action: deny\n    connect: { ports: [0] }\n";
  check(mg_profile_from_text(bad_port, sizeof bad_port - 1, &p) == MG_ERR_PROFILE && p == NULL,
        "port 0 is MG_ERR_PROFILE");
  check(has(mg_last_error(), "rules[0].connect.ports[0]"), "the message has the field path");
  mg_diagnostic d;
  check(mg_last_error_diagnostic_count() == 1 && mg_last_error_diagnostic(0, &d) == MG_OK &&
            strcmp(d.field, "rules[0].connect.ports[0]") == 0 && has(d.message, "port 0"),
        "one diagnostic with field and message");
  check(mg_last_error_diagnostic(1, &d) == MG_ERR_INVALID_ARGUMENT &&
            mg_last_error_code() == MG_ERR_PROFILE,
        "an index past the count is refused and keeps the last error");

  const char typo[] =
      "apiVersion: minerguard/v1\nname: t\nrules:\n"
      "  - name: r\n    action: deny\n    exec: { nmaes: [a] }\n";
  check(mg_profile_from_text(typo, sizeof typo - 1, &p) == MG_ERR_PROFILE &&
            mg_last_error_diagnostic(0, &d) == MG_OK && d.line == 6 && has(d.message, "nmaes"),
        "a syntax error gives its line");

  check(mg_profile_from_file("/nonexistent/minerguard.yaml", &p) == MG_ERR_PROFILE &&
            has(mg_last_error(), "/nonexistent/minerguard.yaml"),
        "a missing file is MG_ERR_PROFILE naming it");
  check(mg_profile_bundled("no-such", &p) == MG_ERR_INVALID_ARGUMENT &&
            has(mg_last_error(), "default"),
        "unknown bundled profile lists the bundled ones");
  check(mg_profile_bundled("default", &p) == MG_OK, "bundled default");
  mg_profile_free(p);

  /* Builder: every problem at once. */
  mg_profile_new("built", &p);
  uint16_t ports[] = {0, 3333};
  const char *names[] = {"a/b"};
  check(mg_profile_add_connect_ports(p, "pool", MG_ACTION_DENY, ports, 2) == MG_OK,
        "add_connect_ports accepts, validation judges");
  mg_profile_add_exec_names(p, "miner", MG_ACTION_KILL, names, 1);
  check(mg_profile_validate(p) == MG_ERR_PROFILE && mg_last_error_diagnostic_count() == 2,
        "validate reports every problem");
  check(has(mg_last_error(), "rules[0].connect.ports[0]") &&
            has(mg_last_error(), "rules[1].exec.names[0]") && has(mg_last_error(), "\n"),
        "the message joins them one per line");
  mg_profile_free(p);

  mg_profile_new("json", &p);
  check(mg_profile_add_rule_json(p, "{\"name\":\"pool\",\"action\":\"deny\",\"connect\":{\"ports\":[3333,\"5000-5010\"]}}") == MG_OK,
        "add_rule_json");
  check(mg_profile_add_rule_json(p, "{\"name\":\"x\",\"action\":\"deny\",\"exec\":{\"nmaes\":[\"a\"]}}") == MG_ERR_PROFILE &&
            has(mg_last_error(), "rules[1]") && has(mg_last_error(), "nmaes"),
        "add_rule_json rejects unknown keys, naming the rule index");
  check(mg_profile_add_rule_json(p, "{not json") == MG_ERR_PROFILE, "add_rule_json rejects bad JSON");
  check(mg_profile_add_rule_json(p, "{\"name\":\"cidr\",\"action\":\"audit\",\"connect\":{\"cidrs\":[\"10.0.0.0/8\"]}}") == MG_OK,
        "add_rule_json takes any matcher kind");
  size_t n = 0;
  check(mg_profile_rule_count(p, &n) == MG_OK && n == 2 && mg_profile_validate(p) == MG_OK,
        "two valid rules");

  /* kill-container: an action like kill, refused on a seccomp rule. */
  mg_profile *kc = NULL;
  const char *miner[] = {"xmrig"};
  check(MG_ACTION_KILL_CONTAINER == 3 && MG_ACTION_KILL_CONTAINER != MG_ACTION_KILL,
        "MG_ACTION_KILL_CONTAINER");
  mg_profile_new("kc", &kc);
  check(mg_profile_add_exec_names(kc, "miner", MG_ACTION_KILL_CONTAINER, miner, 1) == MG_OK &&
            mg_profile_validate(kc) == MG_OK,
        "a kill-container exec rule is valid");
  char kc_json[1024];
  check(mg_profile_to_json(kc, kc_json, sizeof kc_json, NULL) == MG_OK &&
            has(kc_json, "\"kill-container\""),
        "a kill-container rule is written `kill-container`");
  check(mg_profile_add_exec_names(kc, "bad", 4, miner, 1) == MG_ERR_INVALID_ARGUMENT &&
            has(mg_last_error(), "3 kill-container"),
        "an action past MG_ACTION_KILL_CONTAINER is refused, listing the values");
  check(mg_profile_add_rule_json(kc, "{\"name\":\"sc\",\"action\":\"kill-container\","
                                     "\"seccomp\":{\"default\":\"allow\"}}") == MG_OK &&
            mg_profile_validate(kc) == MG_ERR_PROFILE && has(mg_last_error(), "rules[1].action") &&
            has(mg_last_error(), "kill-container"),
        "kill-container on a seccomp rule is refused, naming rules[N].action");
  mg_profile_free(kc);

  /* Buffers. */
  char small[4] = "xyz";
  size_t needed = 0;
  check(mg_profile_to_json(p, small, sizeof small, &needed) == MG_ERR_BUFFER_TOO_SMALL &&
            needed > sizeof small && small[0] == '\0',
        "too small a buffer: MG_ERR_BUFFER_TOO_SMALL, size needed written, empty string");
  check(has(mg_last_error(), "needed"), "the message gives the size");
  size_t size_query = 0;
  check(mg_profile_to_json(p, NULL, 0, &size_query) == MG_ERR_BUFFER_TOO_SMALL &&
            size_query == needed,
        "a size query with a NULL buffer");
  check(mg_profile_to_json(p, NULL, 8, &size_query) == MG_ERR_NULL_POINTER, "NULL buffer with a length");
  char *buf = malloc(needed);
  check(mg_profile_to_json(p, buf, needed, NULL) == MG_OK && strlen(buf) == needed - 1 &&
            has(buf, "\"5000-5010\""),
        "exactly the size needed fits");
  free(buf);
  mg_profile_free(p);

  /* The last error, copied. */
  mg_profile_validate(NULL);
  size_t msg_size = 0;
  char tiny[2];
  check(mg_last_error_copy(tiny, sizeof tiny, &msg_size) == MG_ERR_BUFFER_TOO_SMALL &&
            msg_size == strlen(mg_last_error()) + 1,
        "mg_last_error_copy reports the size needed");
  char copy[256];
  check(mg_last_error_copy(copy, sizeof copy, NULL) == MG_OK &&
            strcmp(copy, mg_last_error()) == 0 && mg_last_error_code() == MG_ERR_NULL_POINTER,
        "mg_last_error_copy copies and keeps the last error");
}

static const char seccomp_profile[] =
    "apiVersion: minerguard/v1\nname: sc\nrules:\n"
    "  - name: no-ptrace\n    action: deny\n    seccomp:\n      syscalls:\n"
    "        - names: [ptrace]\n          action: { errno: 13 }\n";

/* In a forked child: install the profile's filter, then ptrace(TRACEME)
 * must fail with EACCES and getppid() must work. Returns the child's exit
 * status: 0 when all held, else which step failed (or the signal). */
static int seccomp_in_child(mg_profile *p) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (mg_profile_seccomp_install(p) != MG_OK) _exit(10);
    errno = 0;
    long rc = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    if (rc != -1) _exit(11);
    if (errno != EACCES) _exit(12);
    if (syscall(SYS_getppid) <= 0) _exit(13);
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

static void seccomp_checks(void) {
  mg_profile *p = NULL;
  check(mg_profile_from_text(seccomp_profile, sizeof seccomp_profile - 1, &p) == MG_OK,
        "a profile with a seccomp rule");
  bool has_filter = false;
  check(mg_profile_has_seccomp(p, &has_filter) == MG_OK && has_filter, "mg_profile_has_seccomp: yes");
  check(mg_profile_has_seccomp(p, NULL) == MG_ERR_NULL_POINTER, "has_seccomp into NULL");

  /* Raw BPF: sizes, binary, a multiple of 8. */
  size_t bpf_size = 0;
  check(mg_profile_seccomp_bpf(p, NULL, 0, &bpf_size) == MG_ERR_BUFFER_TOO_SMALL &&
            bpf_size > 0 && bpf_size % 8 == 0,
        "seccomp BPF size query: a multiple of sizeof(struct sock_filter)");
  uint8_t small[8];
  memset(small, 0xaa, sizeof small);
  size_t needed = 0;
  check(mg_profile_seccomp_bpf(p, small, sizeof small, &needed) == MG_ERR_BUFFER_TOO_SMALL &&
            needed == bpf_size && small[0] == 0xaa && has(mg_last_error(), "needed"),
        "seccomp BPF into too small a buffer: size needed, buffer untouched");
  check(mg_profile_seccomp_bpf(p, NULL, 16, &needed) == MG_ERR_NULL_POINTER,
        "seccomp BPF: NULL buffer with a length");
  if (bpf_size < 8)
    bpf_size = 8; /* the query failed (reported above): keep the reads in bounds */
  uint8_t *bpf = calloc(1, bpf_size + 1);
  bpf[bpf_size] = 0x5a;
  check(mg_profile_seccomp_bpf(p, bpf, bpf_size, NULL) == MG_OK && bpf[bpf_size] == 0x5a,
        "seccomp BPF into exactly its size, no NUL appended");
  /* The first instruction loads seccomp_data.arch (BPF_LD|BPF_W|BPF_ABS, k=4). */
  uint16_t code;
  uint32_t k;
  memcpy(&code, bpf, sizeof code);
  memcpy(&k, bpf + 4, sizeof k);
  check(code == 0x20 && k == 4, "the program starts by checking the architecture");
  free(bpf);

  /* OCI JSON. */
  size_t json_size = 0;
  char tiny[4] = "xyz";
  check(mg_profile_seccomp_oci_json(p, tiny, sizeof tiny, &json_size) == MG_ERR_BUFFER_TOO_SMALL &&
            json_size > sizeof tiny && tiny[0] == '\0',
        "OCI JSON into too small a buffer: size needed, empty string");
  char *json = malloc(json_size);
  check(mg_profile_seccomp_oci_json(p, json, json_size, &needed) == MG_OK &&
            needed == json_size && strlen(json) == json_size - 1,
        "OCI JSON into exactly its size (NUL-terminated)");
  check(has(json, "\"defaultAction\": \"SCMP_ACT_ALLOW\"") && has(json, "\"syscalls\"") &&
            has(json, "\"ptrace\"") && has(json, "\"SCMP_ACT_ERRNO\"") &&
            has(json, "\"errnoRet\": 13") && has(json, "SCMP_ARCH_X86_64"),
        "OCI JSON has defaultAction, architectures and the ptrace entry");
  free(json);

  /* Installed only in a forked child: the contract program keeps no filter. */
  int child = seccomp_in_child(p);
  check(child == 0, "after mg_profile_seccomp_install a denied call fails with EACCES, others work");
  if (child != 0) printf("#   child status %d\n", child);
  check(prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 0, "the contract program itself has no filter");
  mg_profile_free(p);

  /* A profile without a seccomp rule: MG_ERR_INVALID_ARGUMENT, nothing done. */
  mg_profile *none = NULL;
  const char *names[] = {"xmrig"};
  mg_profile_new("plain", &none);
  mg_profile_add_exec_names(none, "miner", MG_ACTION_DENY, names, 1);
  check(mg_profile_has_seccomp(none, &has_filter) == MG_OK && !has_filter, "mg_profile_has_seccomp: no");
  check(mg_profile_seccomp_install(none) == MG_ERR_INVALID_ARGUMENT &&
            has(mg_last_error(), "no seccomp rule") && has(mg_last_error(), "plain"),
        "install without a seccomp rule is MG_ERR_INVALID_ARGUMENT naming the profile");
  needed = 99;
  check(mg_profile_seccomp_bpf(none, NULL, 0, &needed) == MG_ERR_INVALID_ARGUMENT && needed == 99,
        "BPF export without a seccomp rule");
  check(mg_profile_seccomp_oci_json(none, NULL, 0, &needed) == MG_ERR_INVALID_ARGUMENT,
        "OCI export without a seccomp rule");
  mg_profile_free(none);

  /* Invalid profiles and handles. */
  mg_profile *bad = NULL;
  mg_profile_new("bad", &bad);
  mg_profile_add_rule_json(bad, "{\"name\":\"s\",\"action\":\"deny\",\"seccomp\":"
                                "{\"syscalls\":[{\"names\":[\"no_such_call\"],\"action\":\"kill_process\"}]}}");
  check(mg_profile_seccomp_install(bad) == MG_ERR_PROFILE &&
            has(mg_last_error(), "no_such_call") && mg_last_error_diagnostic_count() >= 1,
        "an unknown syscall name is MG_ERR_PROFILE with diagnostics");
  mg_profile_free(bad);
  check(mg_profile_seccomp_install(bad) == MG_ERR_INVALID_HANDLE, "install with a freed profile");
  check(mg_profile_seccomp_oci_json(NULL, NULL, 0, NULL) == MG_ERR_NULL_POINTER,
        "OCI export of NULL");

  /* OCI cannot express `notify` (it needs a listener socket). */
  mg_profile *notify = NULL;
  mg_profile_new("notify", &notify);
  mg_profile_add_rule_json(notify, "{\"name\":\"n\",\"action\":\"deny\",\"seccomp\":"
                                   "{\"syscalls\":[{\"names\":[\"ptrace\"],\"action\":\"notify\"}]}}");
  check(mg_profile_seccomp_oci_json(notify, NULL, 0, &needed) == MG_ERR_SECCOMP &&
            has(mg_last_error(), "notify"),
        "a notify action exported to OCI is MG_ERR_SECCOMP");
  check(strcmp(mg_result_name(MG_ERR_SECCOMP), "MG_ERR_SECCOMP") == 0, "MG_ERR_SECCOMP has its name");
  mg_profile_free(notify);
}

/* Pinned instances, the checks that touch no kernel: names are checked
 * before anything is loaded or looked up. */
static void instance_names(void) {
  mg_enforcer *e = (mg_enforcer *)0x1;
  mg_enforcer_options opts = {0};
  opts.instance = "a/b";
  check(mg_enforcer_new_with_options(&opts, &e) == MG_ERR_PIN && e == NULL &&
            has(mg_last_error(), "`a/b`"),
        "an instance name with a slash is MG_ERR_PIN naming it");
  opts.instance = "";
  check(mg_enforcer_new_with_options(&opts, &e) == MG_ERR_PIN && has(mg_last_error(), "1-64"),
        "an empty instance name is MG_ERR_PIN saying what a name may hold");
  opts.instance = "bad\xff";
  check(mg_enforcer_new_with_options(&opts, &e) == MG_ERR_INVALID_UTF8 && e == NULL &&
            has(mg_last_error(), "`options.instance`"),
        "an invalid UTF-8 instance name is MG_ERR_INVALID_UTF8 naming the field");
  check(mg_instance_remove(NULL) == MG_ERR_NULL_POINTER && has(mg_last_error(), "`name`"),
        "mg_instance_remove(NULL)");
  check(mg_instance_remove("../x") == MG_ERR_PIN && has(mg_last_error(), "`../x`"),
        "mg_instance_remove of a bad name is MG_ERR_PIN naming it");
  check(mg_instance_remove("bad\xff") == MG_ERR_INVALID_UTF8, "mg_instance_remove of invalid UTF-8");
  char missing[64];
  snprintf(missing, sizeof missing, "contract-missing-%d", (int)getpid());
  check(mg_instance_remove(missing) == MG_ERR_PIN && has(mg_last_error(), "no pinned instance") &&
            has(mg_last_error(), missing),
        "mg_instance_remove of a missing instance is MG_ERR_PIN naming it");
  check(strcmp(mg_result_name(MG_ERR_PIN), "MG_ERR_PIN") == 0 && MG_ERR_PIN == 16,
        "MG_ERR_PIN has its name");
  check(mg_enforcer_detach(NULL) == MG_ERR_NULL_POINTER, "detach of NULL");
  check(mg_enforcer_detach((mg_enforcer *)(uintptr_t)0xdead0) == MG_ERR_INVALID_HANDLE,
        "detach of a forged handle");
  char buf[8];
  check(mg_enforcer_instance(NULL, buf, sizeof buf, NULL) == MG_ERR_NULL_POINTER &&
            mg_enforcer_release_unadopted(NULL, NULL, NULL) == MG_ERR_NULL_POINTER &&
            mg_enforcer_unadopted(NULL, buf, sizeof buf, NULL) == MG_ERR_NULL_POINTER,
        "instance calls on a NULL enforcer");
}

/* The instances' JSON, grown until it fits (other enforcers may pin or end
 * instances meanwhile). The caller frees it; NULL on failure. */
static char *instances_json(void) {
  size_t size = 64;
  for (int tries = 0; tries < 8; tries++) {
    char *buf = malloc(size);
    size_t needed = 0;
    mg_result rc = mg_instances_json(buf, size, &needed);
    if (rc == MG_OK) return buf;
    free(buf);
    if (rc != MG_ERR_BUFFER_TOO_SMALL || needed <= size) return NULL;
    size = needed + 256;
  }
  return NULL;
}

static void static_strings(void) {
  check(strcmp(mg_version(), MG_EXPECTED_VERSION) == 0, "mg_version");
  check(strcmp(mg_result_name(MG_ERR_BUFFER_TOO_SMALL), "MG_ERR_BUFFER_TOO_SMALL") == 0 &&
            strcmp(mg_result_name(-1), "MG_UNKNOWN") == 0,
        "mg_result_name");
  check(strcmp(mg_backend_name(MG_BACKEND_CGROUP), "cgroup") == 0 &&
            strcmp(mg_backend_name(42), "unknown") == 0,
        "mg_backend_name");
  printf("layout mg_event size=%zu time_unix_ns=%zu cgroup_id=%zu pid=%zu kind=%zu family=%zu "
         "protocol=%zu truncated=%zu ip=%zu comm=%zu path=%zu rule=%zu profile=%zu ppid=%zu "
         "proc_source=%zu pname=%zu cmdline=%zu pattern=%zu killed_cgroup=%zu kill_error=%zu\n",
         sizeof(mg_event), offsetof(mg_event, time_unix_ns), offsetof(mg_event, cgroup_id),
         offsetof(mg_event, pid), offsetof(mg_event, kind), offsetof(mg_event, family),
         offsetof(mg_event, protocol), offsetof(mg_event, truncated), offsetof(mg_event, ip),
         offsetof(mg_event, comm), offsetof(mg_event, path), offsetof(mg_event, rule),
         offsetof(mg_event, profile), offsetof(mg_event, ppid), offsetof(mg_event, proc_source),
         offsetof(mg_event, pname), offsetof(mg_event, cmdline), offsetof(mg_event, pattern),
         offsetof(mg_event, killed_cgroup), offsetof(mg_event, kill_error));
  printf("layout mg_probe_report size=%zu kernel=%zu bpf_lsm_detail=%zu\n",
         sizeof(mg_probe_report), offsetof(mg_probe_report, kernel),
         offsetof(mg_probe_report, bpf_lsm_detail));
  printf("layout mg_scan_options size=%zu dry_run=%zu exclude=%zu exclude_count=%zu\n",
         sizeof(mg_scan_options), offsetof(mg_scan_options, dry_run),
         offsetof(mg_scan_options, exclude), offsetof(mg_scan_options, exclude_count));
  printf("layout mg_enforcer_options size=%zu backend=%zu instance=%zu stratum_judge=%zu\n",
         sizeof(mg_enforcer_options), offsetof(mg_enforcer_options, backend),
         offsetof(mg_enforcer_options, instance), offsetof(mg_enforcer_options, stratum_judge));
}

/* Scans and the behaviour detector: every bad argument refused before
 * anything is read (no cgroup of the machine is scanned here). */
static void scans_and_behaviour(void) {
  const char text[] = "apiVersion: minerguard/v1\nname: b\nrules:\n"
                      "  - name: mining\n    action: kill\n    behaviour: {}\n";
  mg_profile *p = NULL;
  mg_behaviour_detector *d = NULL;
  mg_scan_report *r = NULL;
  const char *no_cgroup[] = {"/proc"};
  const char *missing[] = {NULL};
  mg_scan_options bad_exclude = {true, NULL, 1};
  mg_scan_options with_null = {true, missing, 1};

  check(mg_profile_from_text(text, sizeof text - 1, &p) == MG_OK, "a behaviour profile");
  check(mg_behaviour_detector_new(NULL, &d) == MG_ERR_NULL_POINTER && d == NULL,
        "detector: NULL profile");
  check(mg_behaviour_detector_new(p, NULL) == MG_ERR_NULL_POINTER, "detector: NULL out");
  check(mg_behaviour_detector_new(p, &d) == MG_OK && d != NULL, "detector made");
  check(mg_behaviour_detector_sample(d, no_cgroup, 0, NULL, &r) == MG_ERR_INVALID_ARGUMENT,
        "sample: no cgroup");
  check(mg_behaviour_detector_sample(d, no_cgroup, 1, NULL, &r) == MG_ERR_CGROUP &&
            has(mg_last_error(), "/proc"),
        "sample: a path that is no cgroup is MG_ERR_CGROUP naming it");
  check(mg_behaviour_detector_sample(d, no_cgroup, 1, &bad_exclude, &r) ==
                MG_ERR_NULL_POINTER &&
            has(mg_last_error(), "options.exclude"),
        "sample: exclude NULL with a count");
  check(mg_behaviour_detector_sample(d, no_cgroup, 1, &with_null, &r) == MG_ERR_NULL_POINTER &&
            has(mg_last_error(), "options.exclude[0]"),
        "sample: a NULL exclude path is named");
  check(mg_behaviour_detector_sample(d, no_cgroup, 1, NULL, NULL) == MG_ERR_NULL_POINTER,
        "sample: NULL out");
  check(mg_scan_with(p, no_cgroup, 1, &with_null, &r) == MG_ERR_NULL_POINTER &&
            has(mg_last_error(), "options.exclude[0]"),
        "scan_with: a NULL exclude path is named");
  check(mg_scan_with(p, no_cgroup, 1, NULL, &r) == MG_ERR_CGROUP, "scan_with: no cgroup");
  check(mg_behaviour_detector_free(d) == MG_OK, "detector freed");
  check(mg_behaviour_detector_sample(d, no_cgroup, 1, NULL, &r) == MG_ERR_INVALID_HANDLE,
        "sample: a freed detector");
  check(mg_behaviour_detector_free(d) == MG_ERR_INVALID_HANDLE, "detector freed twice");
  check(mg_behaviour_detector_free(NULL) == MG_OK, "freeing NULL is a no-op");
  mg_profile_free(p);
}

static void enforcer(const char *cgroup, const char *backend_name) {
  uint32_t backend = strcmp(backend_name, "lsm") == 0      ? MG_BACKEND_LSM
                     : strcmp(backend_name, "cgroup") == 0 ? MG_BACKEND_CGROUP
                                                           : MG_BACKEND_AUTO;
  mg_probe_report report;
  check(mg_probe(&report) == MG_OK && report.backend != MG_BACKEND_NONE && report.euid == 0 &&
            report.kernel[0] != '\0' && report.bpf_lsm_detail[0] != '\0',
        "mg_probe finds a backend");
  printf("# probe: backend=%s bpf_lsm=%d (%s)\n", mg_backend_name(report.backend),
         report.bpf_lsm_available, report.bpf_lsm_detail);
  size_t json_size = 0;
  check(mg_probe_json(NULL, 0, &json_size) == MG_ERR_BUFFER_TOO_SMALL && json_size > 100,
        "mg_probe_json size query");

  mg_enforcer *e = (mg_enforcer *)0x1;
  check(mg_enforcer_new(99, &e) == MG_ERR_INVALID_ARGUMENT && e == NULL, "unknown backend value");
  mg_enforcer_options opts = {.backend = backend, .event_capacity = 1024, .require_all_rules = 1};
  check(mg_enforcer_new_with_options(&opts, &e) == MG_OK, "mg_enforcer_new_with_options");
  mg_backend kind;
  check(mg_enforcer_backend(e, &kind) == MG_OK &&
            (kind == MG_BACKEND_LSM || kind == MG_BACKEND_CGROUP),
        "mg_enforcer_backend");

  mg_profile *p = NULL;
  uint16_t ports[] = {3333};
  mg_profile_new("contract", &p);
  mg_profile_add_connect_ports(p, "pool", MG_ACTION_DENY, ports, 1);

  uint64_t h = 0;
  char missing[64];
  snprintf(missing, sizeof missing, "minerguard-missing-%d", (int)getpid());
  check(mg_enforcer_apply_cgroup(e, p, missing, &h) == MG_ERR_CGROUP && h == 0 &&
            has(mg_last_error(), missing),
        "apply to a missing cgroup is MG_ERR_CGROUP naming it");
  check(mg_enforcer_apply_cgroup(e, p, cgroup, NULL) == MG_ERR_NULL_POINTER,
        "apply without an out-handle is refused before anything is applied");
  check(mg_enforcer_apply_cgroup(e, p, "", &h) == MG_ERR_INVALID_ARGUMENT, "empty cgroup path");
  check(mg_enforcer_apply_cgroup_id(e, p, 0xfffffffffffull, &h) == MG_ERR_CGROUP,
        "apply to an unknown cgroup id is MG_ERR_CGROUP");
  check(mg_enforcer_remove(e, 12345) == MG_ERR_SCOPE && has(mg_last_error(), "unknown"),
        "remove of an unknown handle is MG_ERR_SCOPE");
  check(mg_enforcer_update(e, 12345, p) == MG_ERR_SCOPE, "update of an unknown handle");

  mg_profile *invalid = NULL;
  uint16_t zero[] = {0};
  mg_profile_new("invalid", &invalid);
  mg_profile_add_connect_ports(invalid, "zero", MG_ACTION_DENY, zero, 1);
  check(mg_enforcer_apply_cgroup(e, invalid, cgroup, &h) == MG_ERR_PROFILE &&
            has(mg_last_error(), "rules[0].connect.ports[0]"),
        "apply of an invalid profile is MG_ERR_PROFILE with the field path");

  mg_profile *unenforceable = NULL;
  mg_profile_new("gaps", &unenforceable);
  /* Seccomp rules are never carried by a BPF backend (they are a filter the
   * caller installs: mg_profile_seccomp_*()). */
  mg_profile_add_rule_json(unenforceable, "{\"name\":\"no-ptrace\",\"action\":\"deny\",\"seccomp\":"
                                          "{\"syscalls\":[{\"names\":[\"ptrace\"],\"action\":\"kill_process\"}]}}");
  check(mg_enforcer_apply_cgroup(e, unenforceable, cgroup, &h) == MG_ERR_SCOPE &&
            has(mg_last_error(), "no-ptrace"),
        "require_all_rules refuses a rule the backend cannot enforce");

  struct stat st;
  check(stat(cgroup, &st) == 0, "the test cgroup exists");
  check(mg_enforcer_apply_cgroup_id(e, p, (uint64_t)st.st_ino, &h) == MG_OK && h != 0,
        "apply by cgroup id");
  uint64_t again = 0;
  check(mg_enforcer_apply_cgroup(e, p, cgroup, &again) == MG_ERR_SCOPE &&
            has(mg_last_error(), "already"),
        "a second apply to the same scope is MG_ERR_SCOPE");
  check(mg_enforcer_update(e, h, invalid) == MG_ERR_PROFILE, "update with an invalid profile");
  mg_profile *kc = NULL;
  const char *miner[] = {"xmrig"};
  mg_profile_new("contract-kill-container", &kc);
  mg_profile_add_exec_names(kc, "miner", MG_ACTION_KILL_CONTAINER, miner, 1);
  check(mg_enforcer_update(e, h, kc) == MG_OK, "a kill-container profile compiles and applies");
  mg_profile_free(kc);
  check(mg_enforcer_update(e, h, p) == MG_OK, "update");
  size_t unenforced_size = 0;
  char unenforced[64];
  check(mg_enforcer_unenforced(e, h, unenforced, sizeof unenforced, &unenforced_size) == MG_OK &&
            unenforced_size == 1 && unenforced[0] == '\0',
        "every rule enforced");
  mg_drops drops;
  check(mg_enforcer_drops(e, &drops) == MG_OK && drops.ring == 0 && drops.channel == 0,
        "no drops");

  mg_events *events = NULL;
  mg_event ev;
  check(mg_events_new(e, &events) == MG_OK, "mg_events_new");
  check(mg_events_try_receive(events, &ev) == MG_ERR_TIMEOUT, "try_receive with nothing queued");
  check(mg_events_receive(events, 10, &ev) == MG_ERR_TIMEOUT && has(mg_last_error(), "10 ms"),
        "receive times out");
  check(mg_events_receive(events, 10, NULL) == MG_ERR_NULL_POINTER, "receive into NULL");

  check(mg_enforcer_remove(e, h) == MG_OK, "remove");
  check(mg_enforcer_remove(e, h) == MG_ERR_SCOPE, "a second remove is MG_ERR_SCOPE");
  check(mg_enforcer_free(e) == MG_OK, "mg_enforcer_free");
  check(mg_events_receive(events, 1000, &ev) == MG_ERR_CLOSED,
        "the stream of a freed enforcer reports MG_ERR_CLOSED");
  check(mg_enforcer_free(e) == MG_ERR_INVALID_HANDLE, "double free of an enforcer is reported");
  check(mg_enforcer_drops(e, &drops) == MG_ERR_INVALID_HANDLE, "use of a freed enforcer");
  check(mg_events_free(events) == MG_OK && mg_events_free(events) == MG_ERR_INVALID_HANDLE,
        "event stream free, then double free");
  mg_profile_free(p);
  mg_profile_free(invalid);
  mg_profile_free(unenforceable);
}

/* A pinned instance: it outlives its enforcer, is adopted by name, and ends
 * with mg_enforcer_detach(). */
static void pinned(const char *cgroup, const char *backend_name, const char *name) {
  char quoted[128];
  snprintf(quoted, sizeof quoted, "\"name\":\"%s\"", name);
  mg_enforcer_options opts = {0};
  opts.backend = strcmp(backend_name, "lsm") == 0      ? MG_BACKEND_LSM
                 : strcmp(backend_name, "cgroup") == 0 ? MG_BACKEND_CGROUP
                                                       : MG_BACKEND_AUTO;
  opts.instance = name;
  mg_enforcer *e = NULL;
  char *json = instances_json();
  check(json && !has(json, quoted), "no instance of the name before");
  free(json);
  check(mg_enforcer_new_with_options(&opts, &e) == MG_OK, "open a pinned instance");
  char got[80];
  size_t needed = 0;
  check(mg_enforcer_instance(e, got, sizeof got, &needed) == MG_OK && strcmp(got, name) == 0 &&
            needed == strlen(name) + 1,
        "mg_enforcer_instance names it");
  mg_profile *p = NULL;
  uint16_t ports[] = {3333};
  mg_profile_new("pinned", &p);
  mg_profile_add_connect_ports(p, "pool", MG_ACTION_DENY, ports, 1);
  uint64_t h = 0;
  check(mg_enforcer_apply_cgroup(e, p, cgroup, &h) == MG_OK, "apply on the pinned instance");
  mg_enforcer *second = (mg_enforcer *)0x1;
  check(mg_enforcer_new_with_options(&opts, &second) == MG_ERR_PIN && second == NULL &&
            has(mg_last_error(), "in use"),
        "a second live enforcer of the instance is MG_ERR_PIN");
  check(mg_instance_remove(name) == MG_ERR_PIN && has(mg_last_error(), "in use"),
        "removing an instance a live enforcer holds is MG_ERR_PIN");
  check(mg_enforcer_free(e) == MG_OK, "free the pinned enforcer");

  json = instances_json();
  check(json && json[0] == '[' && has(json, quoted) && has(json, cgroup) &&
            has(json, "\"profile\":\"pinned\""),
        "mg_instances_json lists the freed enforcer's instance and its scope");
  free(json);

  check(mg_enforcer_new_with_options(&opts, &e) == MG_OK, "open the instance again: adopt it");
  char unadopted[512];
  check(mg_enforcer_unadopted(e, unadopted, sizeof unadopted, NULL) == MG_OK &&
            unadopted[0] == '[' && has(unadopted, cgroup),
        "the earlier scope is unadopted until applied again");
  check(mg_enforcer_apply_cgroup(e, p, cgroup, &h) == MG_OK, "apply again: adopted");
  check(mg_enforcer_unadopted(e, unadopted, sizeof unadopted, NULL) == MG_OK &&
            strcmp(unadopted, "[]") == 0,
        "nothing unadopted after the apply");
  size_t dropped = 99, links = 99;
  check(mg_enforcer_release_unadopted(e, &dropped, &links) == MG_OK && dropped == 0,
        "release_unadopted drops nothing");
  check(mg_enforcer_release_unadopted(e, NULL, NULL) == MG_OK, "release_unadopted with NULL outs");
  check(mg_enforcer_detach(e) == MG_OK, "mg_enforcer_detach");
  check(mg_enforcer_free(e) == MG_ERR_INVALID_HANDLE && mg_enforcer_detach(e) == MG_ERR_INVALID_HANDLE,
        "detach freed the handle");
  json = instances_json();
  check(json && !has(json, quoted), "the detached instance is gone from mg_instances_json");
  free(json);
  check(mg_instance_remove(name) == MG_ERR_PIN && has(mg_last_error(), "no pinned instance"),
        "removing the detached instance is MG_ERR_PIN");

  /* An unpinned enforcer: no instance name, nothing to adopt, detach frees. */
  opts.instance = NULL;
  check(mg_enforcer_new_with_options(&opts, &e) == MG_OK &&
            mg_enforcer_instance(e, got, sizeof got, &needed) == MG_OK && got[0] == '\0' &&
            needed == 1,
        "an unpinned enforcer has no instance name");
  check(mg_enforcer_release_unadopted(e, &dropped, &links) == MG_OK && dropped == 0 && links == 0,
        "an unpinned enforcer releases nothing");
  check(mg_enforcer_detach(e) == MG_OK, "detach of an unpinned enforcer frees it");
  mg_profile_free(p);
}

int main(int argc, char **argv) {
  handles_and_pointers();
  utf8();
  profiles();
  static_strings();
  scans_and_behaviour();
  instance_names();
  /* valgrind does not implement seccomp(2): its run leaves these out. */
  if (getenv("MG_CONTRACT_NO_SECCOMP"))
    printf("# seccomp checks skipped (MG_CONTRACT_NO_SECCOMP)\n");
  else
    seccomp_checks();
  if (argc >= 3) enforcer(argv[1], argv[2]);
  if (argc == 4) pinned(argv[1], argv[2], argv[3]);
  printf("# %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
