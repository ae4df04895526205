//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`.
use std::{env, fs, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    // The directory too: a new bpf/*.bpf.c must make a new skeleton.
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=bpf/include");
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    for src in sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("bpf source name");
        let skel = out_dir.join(format!("{stem}.skel.rs"));
        let obj = out_dir.join(format!("{stem}.bpf.o"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang_args(["-Ibpf/include", "-Wall", "-D__TARGET_ARCH_x86"])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
        if stem == "abi" {
            // The generation of the shared maps' layout (names, sizes, BTF):
            // pinned maps of another generation are never adopted.
            use std::hash::{Hash, Hasher};
            let bytes = fs::read(&obj).expect("the abi object just built");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            println!("cargo:rustc-env=MINERGUARD_ABI_DIGEST={:016x}", h.finish());
        }
    }
}
