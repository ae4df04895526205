//! The checked-in C header is exactly what cbindgen generates from src/capi/.
//! `MINERGUARD_BLESS=1 cargo test --test capi_header` rewrites it.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        // Only the C API module: the rest of the crate is not part of the ABI.
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/minerguard.h");
    let fresh = generate();
    if std::env::var("MINERGUARD_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &fresh).expect("write include/minerguard.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/minerguard.h is stale (src/capi/ or cbindgen.toml changed); regenerate it with\n    \
         MINERGUARD_BLESS=1 cargo test --test capi_header\nand check in the result"
    );
}

#[test]
fn header_declares_the_whole_surface() {
    let header = generate();
    for item in [
        "#ifndef MINERGUARD_H",
        "typedef struct mg_enforcer mg_enforcer;",
        "typedef struct mg_profile mg_profile;",
        "typedef struct mg_events mg_events;",
        "MG_ERR_BUFFER_TOO_SMALL",
        "const char *mg_last_error(void);",
        "mg_result mg_events_try_receive(",
        "char rule[MG_NAME_LEN];",
        "#define MG_PATH_LEN 264",
        "mg_result mg_profile_add_rule_json(",
        "MG_ERR_SECCOMP = 15",
        "MG_ERR_PIN = 16",
        // Pinned instances.
        "const char *instance;",
        "mg_result mg_enforcer_detach(struct mg_enforcer *enforcer);",
        "mg_result mg_enforcer_release_unadopted(",
        "mg_result mg_enforcer_instance(",
        "mg_result mg_instances_json(char *buf, size_t len, size_t *needed);",
        "mg_result mg_instance_remove(const char *name);",
        "mg_result mg_profile_seccomp_install(const struct mg_profile *profile);",
        "mg_result mg_profile_seccomp_bpf(",
        "mg_result mg_profile_seccomp_oci_json(",
        "mg_result mg_profile_has_seccomp(",
        // The names of the uint32_t arguments' values.
        "MG_CHECK_FAST_OPEN = 2,",
        "MG_CHECK_STRATUM_SK_MSG = 4,",
        "MG_BACKEND_LSM",
    ] {
        assert!(header.contains(item), "header lacks `{item}`:\n{header}");
    }
    assert!(
        header.contains("Size of `mg_event.comm`"),
        "doc comments are carried over"
    );
    assert!(
        !header.contains("MAX_RULES"),
        "only src/capi/ is exported, not the library's own constants"
    );
}
