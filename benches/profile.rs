//! Userspace control-path costs: profile parse + validate + compile,
//! start-up (`Enforcer::new` + the first apply), and `Enforcer::apply` /
//! `Enforcer::update` latency on a bench cgroup.
//!
//! Profiles: the bundled ones (`default`, `container-strict` with its
//! `extends`, `audit`), and generated ones where every rule is named and
//! has one matcher with its own key (an exec name, a port, or an IPv4 /32
//! in turn), so no rule shadows another: 10,000 rules (the size the goal
//! names), as YAML and as JSON (JSON takes serde_json's fast path).
//!
//! The baseline in the same run is serde parsing alone (`serde_yaml` into
//! `minerguard::Profile` without validation), so the cost of validation and
//! compilation shows as a ratio. Apply/update latency needs root and is
//! measured against a fresh bench cgroup (never the host): apply is timed
//! from call to return (scope removal untimed), update alternates between
//! two profiles. The baseline there is the bundled `default`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use std::hint::black_box;

use criterion::{BenchmarkId, Throughput};
use minerguard::{Action, KernelPolicy, Profile, Rule, Scope};

/// A profile of `n` rules, one matcher and one distinct key each.
fn generated(n: usize) -> Profile {
    let mut p = Profile::new(format!("generated-{n}"));
    for i in 0..n {
        let name = format!("rule-{i}");
        let action = if i % 2 == 0 {
            Action::Deny
        } else {
            Action::Audit
        };
        let rule = match i % 3 {
            0 => Rule::exec_names(name, action, [format!("miner-{i}")]),
            1 => Rule::connect_ports(name, action, [10_000 + i as u16]),
            _ => Rule::connect_cidrs(
                name,
                action,
                [format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)],
            ),
        };
        p = p.rule(rule);
    }
    p
}

fn bundled_text(name: &str) -> String {
    let path = format!("{}/profiles/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn main() {
    let big = 10_000;
    let inputs: Vec<(String, String, bool)> = vec![
        ("default".into(), bundled_text("default"), true),
        (
            "container-strict".into(),
            bundled_text("container-strict"),
            true,
        ),
        ("audit".into(), bundled_text("audit"), true),
        (
            format!("generated-{big}-yaml"),
            generated(big).to_yaml(),
            true,
        ),
        (
            format!("generated-{big}-json"),
            generated(big).to_json(),
            true,
        ),
    ];

    let mut c = criterion();
    for (name, text, valid) in &inputs {
        let rules = serde_yaml::from_str::<Profile>(text)
            .map(|p| p.rules.len())
            .unwrap_or(0);
        let mut group = c.benchmark_group(format!("profile/{name}"));
        group.throughput(Throughput::Elements(rules.max(1) as u64));
        let json = name.ends_with("-json");
        group.bench_function(BenchmarkId::from_parameter("serde-only"), |b| {
            b.iter(|| {
                let text = black_box(text);
                black_box(if json {
                    serde_json::from_str::<Profile>(text).is_ok()
                } else {
                    serde_yaml::from_str::<Profile>(text).is_ok()
                })
            })
        });
        if *valid {
            group.bench_function(BenchmarkId::from_parameter("parse+validate+compile"), |b| {
                b.iter(|| {
                    let p = Profile::from_yaml(black_box(text)).expect("valid profile");
                    black_box(KernelPolicy::compile(&p).expect("compiles"))
                })
            });
        } else {
            let err = Profile::from_yaml(text).expect_err("over the rule limit");
            println!("profile/{name}: refused as expected: {err}");
            group.bench_function(BenchmarkId::from_parameter("parse+refuse"), |b| {
                b.iter(|| black_box(Profile::from_yaml(black_box(text)).is_err()))
            });
        }
        group.finish();
    }

    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "profile: apply/update latency loads BPF programs and needs root; \
             run as root: sudo -E cargo bench --bench profile"
        );
        std::process::exit(2);
    }
    let cgroup = bench_cgroup();
    let scope = Scope::Cgroup(cgroup.cgroup().path().to_path_buf());
    let default = Profile::bundled("default").unwrap();
    let strict = Profile::bundled("container-strict").unwrap();
    let large = generated(big);
    {
        // Start-up to first enforcement: the optional hooks load with the
        // first profile that needs them, so a profile without stratum,
        // cmdline or file-judging exec rules skips most of the verifier's
        // work. Baseline: the bundled default, which needs every hook.
        let ports_only = Profile::new("ports-only").rule(Rule::connect_ports(
            "pool-ports",
            Action::Deny,
            [3333u16, 4444, 14444],
        ));
        let mut group = c.benchmark_group("start");
        group.sample_size(10);
        group.sampling_mode(criterion::SamplingMode::Flat);
        for (name, profile) in [
            ("new+apply/default", &default),
            ("new+apply/ports-only", &ports_only),
        ] {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let mut e = minerguard::Enforcer::new().expect("load the enforcer");
                    black_box(e.apply(profile, scope.clone()).expect("apply"));
                })
            });
        }
        group.finish();
    }
    let mut enforcer = minerguard::Enforcer::new().expect("load the enforcer");
    // The first apply of `default` loads the optional hooks; not timed.
    let warm = enforcer.apply(&default, scope.clone()).expect("apply");
    enforcer.remove(warm).expect("remove");
    {
        let mut group = c.benchmark_group("apply");
        group.sample_size(10);
        for (name, profile) in [
            ("default", &default),
            ("container-strict", &strict),
            ("generated", &large),
        ] {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t0 = Instant::now();
                        let h = enforcer.apply(profile, scope.clone()).expect("apply");
                        total += t0.elapsed();
                        enforcer.remove(h).expect("remove");
                    }
                    total
                })
            });
        }
        group.finish();
    }
    {
        let mut group = c.benchmark_group("update");
        group.sample_size(10);
        for (name, a, b2) in [
            ("default<->container-strict", &default, &strict),
            ("default<->generated", &default, &large),
        ] {
            let h = enforcer.apply(a, scope.clone()).expect("apply");
            let mut flip = false;
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    flip = !flip;
                    enforcer
                        .update(h, if flip { b2 } else { a })
                        .expect("update")
                })
            });
            enforcer.remove(h).expect("remove");
        }
        group.finish();
    }
    c.final_summary();
    drop(enforcer);
    cgroup.remove().expect("remove the bench cgroup");
}
