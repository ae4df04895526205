//! Coverage-guided fuzzing of the profile language: arbitrary bytes go to
//! `Profile::from_yaml` (and, when they are JSON, `Profile::from_json`); every
//! profile that parses is compiled (`KernelPolicy`, `SeccompPolicy`) and must
//! survive `to_yaml` -> `from_yaml` (and `to_json` -> `from_json`) unchanged.
//! Any panic, in the library or in the assertions here, is a finding.
//!
//! The target never touches the filesystem: no `from_file`, no
//! `resolve_inodes`, and inputs whose `extends` could name a path are
//! skipped before parsing (see `extends_is_safe`).
//!
//! Run it with `bash scripts/fuzz.sh`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minerguard::{KernelPolicy, Profile, SeccompPolicy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !extends_is_safe(text) {
        return;
    }
    if let Ok(profile) = Profile::from_yaml(text) {
        check(&profile, text);
    }
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        if let Ok(profile) = Profile::from_json(text) {
            check(&profile, text);
        }
    }
});

/// What must hold for every profile the parser accepts.
fn check(profile: &Profile, input: &str) {
    // Compiling may refuse a valid profile (rules that can never fire, seccomp
    // conflicts), but must not panic.
    let _ = KernelPolicy::compile(profile);
    let _ = SeccompPolicy::compile(profile);

    let yaml = profile.to_yaml();
    match Profile::from_yaml(&yaml) {
        Ok(again) if &again == profile => {}
        Ok(again) => panic!(
            "YAML round trip changed the profile\ninput: {input:?}\nyaml: {yaml:?}\nbefore: {profile:?}\nafter: {again:?}"
        ),
        Err(e) => panic!(
            "YAML round trip: the profile's own YAML does not parse: {e}\ninput: {input:?}\nyaml: {yaml:?}\nprofile: {profile:?}"
        ),
    }

    let json = profile.to_json();
    match Profile::from_json(&json) {
        Ok(again) if &again == profile => {}
        Ok(again) => panic!(
            "JSON round trip changed the profile\ninput: {input:?}\njson: {json:?}\nbefore: {profile:?}\nafter: {again:?}"
        ),
        Err(e) => panic!(
            "JSON round trip: the profile's own JSON does not parse: {e}\ninput: {input:?}\njson: {json:?}\nprofile: {profile:?}"
        ),
    }
}

/// False when the parser could follow an `extends` to a file.
///
/// `extends: NAME` with a bundled NAME stays in memory (and exercises the
/// merge code), but anything else would read a file (the loader refuses
/// devices and FIFOs, but a fuzzer has no business reading files). A
/// mapping key spells `extends` only with those letters in the text or
/// through a `\` escape (`"\x65xtends"`), and a profile is read from a
/// mapping only (never from a sequence), so text with neither is safe as
/// is. Otherwise the document is read as a plain YAML value first,
/// and let through only if its sole `extends` is a top-level key whose value
/// is an untagged bundled name.
fn extends_is_safe(text: &str) -> bool {
    if !text.contains("extends") && !text.contains('\\') {
        return true;
    }
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        // The parser would reject it too, but do not rely on that.
        return false;
    };
    let serde_yaml::Value::Mapping(top) = &doc else {
        return !mentions_extends(&doc);
    };
    for (key, value) in top {
        if is_extends(key) {
            let bundled = matches!(value, serde_yaml::Value::String(name)
                if Profile::bundled_names().contains(&name.as_str()));
            if !bundled || !matches!(key, serde_yaml::Value::String(_)) {
                return false;
            }
        } else if mentions_extends(key) || mentions_extends(value) {
            return false;
        }
    }
    true
}

fn is_extends(v: &serde_yaml::Value) -> bool {
    match v {
        serde_yaml::Value::String(s) => s == "extends",
        serde_yaml::Value::Tagged(t) => is_extends(&t.value),
        _ => false,
    }
}

/// Whether `v` has an `extends` key anywhere (conservative: nested ones are
/// not read by the parser, but skipping them costs nothing).
fn mentions_extends(v: &serde_yaml::Value) -> bool {
    match v {
        serde_yaml::Value::Mapping(m) => m
            .iter()
            .any(|(k, v)| is_extends(k) || mentions_extends(k) || mentions_extends(v)),
        serde_yaml::Value::Sequence(s) => s.iter().any(mentions_extends),
        serde_yaml::Value::Tagged(t) => is_extends(&t.value) || mentions_extends(&t.value),
        _ => false,
    }
}
