//! Compiles every `bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`.
//!
//! The objects and skeletons are also kept in `target/bpf-cache`, named by a
//! digest of everything that goes into them (the whole `bpf/` tree, this
//! script, `Cargo.lock` and the compiler's version): each other build of the
//! library (clippy, tests, benches, `cargo install`, the Python extension,
//! the fuzz target; each its own features and so its own run of this
//! script) copies them instead of compiling the same sources again
//! (≈15 s a run on two cores).
use std::{
    env, fs,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::Command,
};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"),
    );
    // The directory too: a new bpf/*.bpf.c must make a new skeleton.
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=bpf/include");
    println!("cargo:rerun-if-env-changed=MINERGUARD_BPF_CACHE");
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .expect("bpf/ directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    // MINERGUARD_BPF_CACHE=0 compiles every source here, cache or not.
    let cache = (env::var_os("MINERGUARD_BPF_CACHE").as_deref() != Some("0".as_ref()))
        .then(|| Cache::new(&manifest_dir));
    for src in sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .expect("bpf source name");
        let skel = out_dir.join(format!("{stem}.skel.rs"));
        let obj = out_dir.join(format!("{stem}.bpf.o"));
        if !cache.as_ref().is_some_and(|c| c.restore(stem, &obj, &skel)) {
            SkeletonBuilder::new()
                .source(&src)
                .obj(&obj)
                .clang_args(["-Ibpf/include", "-Wall", "-D__TARGET_ARCH_x86"])
                .build_and_generate(&skel)
                .unwrap_or_else(|e| panic!("building {}: {e:#}", src.display()));
            if let Some(cache) = &cache {
                cache.store(stem, &obj, &skel);
            }
        }
        if stem == "abi" {
            // The generation of the shared maps' layout (names, sizes, BTF):
            // pinned maps of another generation are never adopted.
            let bytes = fs::read(&obj).expect("the abi object just built");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            println!("cargo:rustc-env=MINERGUARD_ABI_DIGEST={:016x}", h.finish());
        }
    }
}

/// Objects and skeletons built before from the same inputs.
struct Cache {
    dir: PathBuf,
    /// Digest of every input but the source's name.
    inputs: u64,
}

impl Cache {
    fn new(manifest_dir: &Path) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        hash_tree(&manifest_dir.join("bpf"), &mut h);
        for file in ["build.rs", "Cargo.lock"] {
            fs::read(manifest_dir.join(file))
                .unwrap_or_default()
                .hash(&mut h);
        }
        // libbpf-cargo runs `clang` (from PATH, or $CLANG).
        println!("cargo:rerun-if-env-changed=CLANG");
        let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
        let version = Command::new(&clang).arg("--version").output();
        version.map(|o| o.stdout).unwrap_or_default().hash(&mut h);
        Cache {
            dir: manifest_dir.join("target").join("bpf-cache"),
            inputs: h.finish(),
        }
    }

    fn paths(&self, stem: &str) -> (PathBuf, PathBuf) {
        let name = format!("{stem}-{:016x}", self.inputs);
        (
            self.dir.join(format!("{name}.bpf.o")),
            self.dir.join(format!("{name}.skel.rs")),
        )
    }

    /// Copies a cached build of `stem` to `obj` and `skel`; false when
    /// there is none (or it could not be copied).
    fn restore(&self, stem: &str, obj: &Path, skel: &Path) -> bool {
        let (cached_obj, cached_skel) = self.paths(stem);
        cached_obj.is_file()
            && cached_skel.is_file()
            && fs::copy(&cached_obj, obj).is_ok()
            && fs::copy(&cached_skel, skel).is_ok()
    }

    /// Keeps a fresh build of `stem`, in place of older ones. A failure only
    /// means the next build compiles again.
    fn store(&self, stem: &str, obj: &Path, skel: &Path) {
        if fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            let prefix = format!("{stem}-");
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(&prefix).unwrap_or("");
                // "<16 hex digits>.<ext>" (another stem may start with this
                // one), of other inputs.
                let key = format!("{:016x}", self.inputs);
                if rest.len() > 17 && rest.as_bytes()[16] == b'.' && !rest.starts_with(&key) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // The skeleton last: `restore` wants both, and another build may
        // be restoring at this moment (each file appears whole: a rename).
        let (cached_obj, cached_skel) = self.paths(stem);
        for (from, to) in [(obj, cached_obj), (skel, cached_skel)] {
            let tmp = to.with_extension(format!("tmp{}", std::process::id()));
            if fs::copy(from, &tmp).is_err() || fs::rename(&tmp, &to).is_err() {
                let _ = fs::remove_file(&tmp);
                return;
            }
        }
    }
}

/// Hashes the names and contents of every file under `dir`, in order.
fn hash_tree(dir: &Path, h: &mut impl Hasher) {
    let mut entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return,
    };
    entries.sort();
    for path in entries {
        path.file_name().hash(h);
        if path.is_dir() {
            hash_tree(&path, h);
        } else {
            fs::read(&path).unwrap_or_default().hash(h);
        }
    }
}
