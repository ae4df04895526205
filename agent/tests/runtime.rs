//! The metadata sources against real runtimes (#22): a containerd of the
//! test's own (root, state, socket and config in a temporary directory, its
//! CRI plugin off) with containers made by `ctr` the way containerd's CRI
//! plugin labels a pod's sandbox and its containers; and `podman system
//! service` on a temporary socket, over a Podman store of the test's own.
//! The image is a busybox rootfs imported into that Podman store (no
//! registry is reachable), saved as an OCI archive for containerd. No
//! container is started.
//!
//! Needs root, podman, containerd and ctr (scripts/install-deps.sh installs
//! them); without them the tests fail, unless MINERGUARD_ALLOW_SKIP=1.

mod support;

use minerguard_agent::identity::ContainerInfo;
use minerguard_agent::runtime::{
    ContainerdSource, CrioSource, DockerSource, MetadataSource, PodmanSource, RuntimeError,
    CALL_TIMEOUT,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// `pairs` as a label map.
fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts `err` is NotFound.
fn assert_not_found(err: Result<ContainerInfo, RuntimeError>) {
    match err {
        Err(e @ RuntimeError::NotFound { .. }) => println!("{e}"),
        other => panic!("want NotFound, got {other:?}"),
    }
}

/// Asserts `result` is Unreachable, and came within the call bound (and
/// some slack).
fn assert_unreachable<T: std::fmt::Debug>(started: Instant, result: Result<T, RuntimeError>) {
    let took = started.elapsed();
    match result {
        Err(e @ RuntimeError::Unreachable { .. }) => println!("after {took:?}: {e}"),
        other => panic!("want Unreachable, got {other:?}"),
    }
    assert!(
        took < CALL_TIMEOUT * 2 + Duration::from_secs(1),
        "took {took:?}"
    );
}

/// A unix socket that accepts connections (the kernel's backlog) and never
/// answers.
fn silent_socket(dir: &TempDir) -> (std::os::unix::net::UnixListener, PathBuf) {
    let path = dir.path().join("silent.sock");
    (std::os::unix::net::UnixListener::bind(&path).unwrap(), path)
}

#[test]
fn containerd_gives_a_cri_container_and_its_pod() {
    if !can_run(module_path!(), &["containerd", "ctr", "podman"]) {
        return;
    }
    let dir = TempDir::new("containerd");
    let podman = Podman::new(&dir);
    let image = format!("localhost/minerguard-agent-test:{}", std::process::id());
    podman.import_busybox(&dir, &image);
    let archive = podman.save_oci(&dir, &image);

    let (containerd, socket) = start_containerd(&dir);
    // Unmounted after containerd stops, before the directory goes.
    let _unmount = Unmount(dir.path().to_path_buf());
    let namespace = "minerguard-agent-test";
    let source = wait_for("containerd", || {
        ContainerdSource::connect(&socket, namespace)
    });
    let ctr = |args: &[&str]| {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", namespace])
            .args(args)
            .output()
            .expect("run ctr");
        ok(&format!("ctr {}", args.join(" ")), out)
    };
    let base = image.split(':').next().unwrap();
    ctr(&[
        "image",
        "import",
        "--base-name",
        base,
        archive.to_str().unwrap(),
    ]);

    // A pod as containerd's CRI plugin keeps it: its sandbox (the pod's
    // labels beside the CRI ones) and a container.
    let uid = "6c2a1b0e-1f2d-4c3b-9a8e-7d6c5b4a3f2e";
    let pid = std::process::id();
    let (sandbox, app) = (format!("mg-sandbox-{pid}"), format!("mg-app-{pid}"));
    let pod = [
        ("io.kubernetes.pod.uid", uid),
        ("io.kubernetes.pod.namespace", "tenant-a"),
        ("io.kubernetes.pod.name", "web-0"),
    ];
    let create = |id: &str, labels: &[(&str, &str)]| {
        let mut args = vec!["containers".to_string(), "create".to_string()];
        for (k, v) in pod.iter().chain(labels) {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.clone());
        args.push(id.to_string());
        ctr(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    create(
        &sandbox,
        &[
            ("io.cri-containerd.kind", "sandbox"),
            ("tier", "web"),
            ("app", "shop"),
        ],
    );
    create(
        &app,
        &[
            ("io.cri-containerd.kind", "container"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    // A sandbox of another pod, with other labels: not this pod's.
    let other = format!("mg-other-{pid}");
    ctr(&[
        "containers",
        "create",
        "--label",
        "io.cri-containerd.kind=sandbox",
        "--label",
        "io.kubernetes.pod.uid=another-uid",
        "--label",
        "tier=db",
        &image,
        &other,
    ]);

    let info = source.container(&app).expect("the app container");
    println!("containerd: {info:?}");
    assert_eq!(info.id, app);
    assert_eq!(info.name, "app");
    assert_eq!(info.image, image);
    assert_eq!(info.namespace, "tenant-a");
    assert_eq!(info.pod_name, "web-0");
    assert_eq!(info.pod_uid, uid);
    assert_eq!(
        info.pod_labels,
        label_map(&[("tier", "web"), ("app", "shop")])
    );
    assert_eq!(
        info.labels
            .get("io.cri-containerd.kind")
            .map(String::as_str),
        Some("container")
    );
    // The sandbox itself belongs to the same pod.
    let info = source.container(&sandbox).expect("the sandbox");
    assert_eq!(
        (info.pod_name.as_str(), info.name.as_str()),
        ("web-0", sandbox.as_str())
    );
    assert_eq!(
        info.pod_labels,
        label_map(&[("tier", "web"), ("app", "shop")])
    );

    assert_not_found(source.container(&"0".repeat(64)));
    // Another namespace does not see the container.
    let elsewhere = ContainerdSource::connect(&socket, "minerguard-agent-other").unwrap();
    assert_not_found(elsewhere.container(&app));

    // A socket nobody listens on, one that never answers, and containerd
    // gone under a connected source: Unreachable, within the bound.
    let started = Instant::now();
    assert_unreachable(
        started,
        ContainerdSource::connect(&dir.path().join("none.sock"), namespace),
    );
    let (_listener, silent) = silent_socket(&dir);
    let started = Instant::now();
    assert_unreachable(started, ContainerdSource::connect(&silent, namespace));
    drop(containerd);
    let started = Instant::now();
    assert_unreachable(started, source.container(&app));
}

#[test]
fn podman_gives_a_container_with_cri_labels() {
    if !can_run(module_path!(), &["podman", "runc"]) {
        return;
    }
    let dir = TempDir::new("podman");
    let podman = Podman::new(&dir);
    let image = format!("localhost/minerguard-agent-test:{}", std::process::id());
    podman.import_busybox(&dir, &image);
    let socket = dir.path().join("podman.sock");
    let service = podman.service(&socket);
    let source = wait_for("podman system service", || PodmanSource::new(&socket));

    let create = |name: &str, labels: &[(&str, &str)]| {
        let mut cmd = podman.cmd();
        cmd.args(["create", "--network", "none", "--name", name]);
        for (k, v) in labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        cmd.args([&image, "/bin/busybox", "true"]);
        ok(&format!("podman create {name}"), cmd.output().unwrap())
    };
    let pid = std::process::id();
    let name = format!("mg-web-{pid}");
    let id = create(
        &name,
        &[
            ("io.kubernetes.pod.namespace", "ns1"),
            ("io.kubernetes.pod.name", "pod1"),
            ("io.kubernetes.pod.uid", "uid1"),
            ("io.kubernetes.container.name", "web"),
            ("app", "shop"),
        ],
    );
    let info = source.container(&id).expect("the container");
    println!("podman: {info:?}");
    assert_eq!(info.id, id);
    assert_eq!(info.name, "web");
    assert_eq!(info.image, image);
    assert_eq!(
        (
            info.namespace.as_str(),
            info.pod_name.as_str(),
            info.pod_uid.as_str()
        ),
        ("ns1", "pod1", "uid1")
    );
    assert_eq!(info.labels.get("app").map(String::as_str), Some("shop"));
    assert!(info.pod_labels.is_empty());

    // Without CRI labels: Podman's name, no pod.
    let plain = format!("mg-plain-{pid}");
    let plain_id = create(&plain, &[]);
    let info = source.container(&plain_id).expect("the plain container");
    assert_eq!(
        (info.id.as_str(), info.name.as_str()),
        (plain_id.as_str(), plain.as_str())
    );
    assert_eq!((info.namespace.as_str(), info.pod_name.as_str()), ("", ""));

    assert_not_found(source.container(&"0".repeat(64)));

    // The same service's Docker-compatible API, read by the Docker source
    // as on a node with cri-dockerd: the container names its sandbox,
    // whose labels are the pod's (less kubelet's and the annotations).
    let docker = DockerSource::new(&socket).expect("Podman's Docker-compatible API");
    let sandbox_id = create(
        &format!("mg-sandbox-{pid}"),
        &[
            ("io.kubernetes.pod.uid", "uid1"),
            ("io.kubernetes.docker.type", "podsandbox"),
            ("annotation.kubernetes.io/config.source", "api"),
            ("tier", "web"),
        ],
    );
    let in_pod = create(
        &format!("mg-in-pod-{pid}"),
        &[
            ("io.kubernetes.pod.namespace", "ns2"),
            ("io.kubernetes.pod.name", "pod2"),
            ("io.kubernetes.pod.uid", "uid2"),
            ("io.kubernetes.container.name", "app"),
            ("io.kubernetes.sandbox.id", &sandbox_id),
        ],
    );
    let info = docker
        .container(&in_pod)
        .expect("the container, through the Docker API");
    println!("docker: {info:?}");
    assert_eq!(info.id, in_pod);
    assert_eq!(info.name, "app");
    assert_eq!(info.image, image);
    assert_eq!(
        (
            info.namespace.as_str(),
            info.pod_name.as_str(),
            info.pod_uid.as_str()
        ),
        ("ns2", "pod2", "uid2")
    );
    assert_eq!(info.pod_labels, label_map(&[("tier", "web")]));
    assert_not_found(docker.container(&"0".repeat(64)));

    let started = Instant::now();
    assert_unreachable(started, PodmanSource::new(&dir.path().join("none.sock")));
    let (_listener, silent) = silent_socket(&dir);
    let started = Instant::now();
    assert_unreachable(started, PodmanSource::new(&silent));
    drop(service);
    let started = Instant::now();
    assert_unreachable(started, source.container(&id));
}

/// What CRI-O's inspect endpoint answers (the fields of its `ContainerInfo`
/// type), served by a small HTTP server on a unix socket: CRI-O is not
/// installed here.
fn crio_answer(labels: &[(&str, &str)], sandbox: &str) -> String {
    serde_json::json!({
        "name": "k8s_app_web-0_tenant-a_uid-1_0",
        "pid": 4242,
        "image": "registry.example/app:1.2",
        "image_ref": "registry.example/app@sha256:00",
        "created_time": 1,
        "labels": label_map(labels),
        "annotations": {"io.kubernetes.cri-o.Labels": "{}"},
        "crio_annotations": {},
        "log_path": "/var/log/x",
        "root": "/var/lib/x",
        "sandbox": sandbox,
        "ip_addresses": ["10.0.0.5"],
    })
    .to_string()
}

#[test]
fn crio_source_reads_containers_and_their_pods_labels() {
    let dir = TempDir::new("crio");
    let socket = dir.path().join("crio.sock");
    let server = tiny_http::Server::http_unix(&socket).expect("a unix socket server");
    let (ctr, sandbox) = ("c".repeat(64), "5".repeat(64));
    let answers: BTreeMap<String, (u16, String)> = [
        (
            "/info".to_string(),
            (200, r#"{"storage_driver":"overlay"}"#.to_string()),
        ),
        (
            format!("/containers/{ctr}"),
            (
                200,
                crio_answer(
                    &[
                        ("io.kubernetes.pod.namespace", "tenant-a"),
                        ("io.kubernetes.pod.name", "web-0"),
                        ("io.kubernetes.pod.uid", "uid-1"),
                        ("io.kubernetes.container.name", "app"),
                    ],
                    &sandbox,
                ),
            ),
        ),
        (
            format!("/containers/{sandbox}"),
            (
                200,
                crio_answer(
                    &[("io.kubernetes.pod.uid", "uid-1"), ("tier", "web")],
                    &sandbox,
                ),
            ),
        ),
        (
            "/containers/bad".to_string(),
            (200, r#"{"labels":{"a":1}}"#.to_string()),
        ),
    ]
    .into_iter()
    .collect();
    let serving = std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let url = request.url().to_string();
            let (code, body) = answers
                .get(&url)
                .cloned()
                .unwrap_or((404, format!("container with id: {url} not found")));
            let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(code));
            if url == "/containers/stop" {
                break;
            }
        }
    });

    let source = CrioSource::new(&socket).expect("the fake CRI-O answers /info");
    let info = source.container(&ctr).expect("the container");
    assert_eq!(info.id, ctr);
    assert_eq!(info.name, "app");
    assert_eq!(info.image, "registry.example/app:1.2");
    assert_eq!(
        (
            info.namespace.as_str(),
            info.pod_name.as_str(),
            info.pod_uid.as_str()
        ),
        ("tenant-a", "web-0", "uid-1")
    );
    assert_eq!(info.pod_labels, label_map(&[("tier", "web")]));
    assert_not_found(source.container(&"0".repeat(64)));
    match source.container("bad") {
        Err(RuntimeError::BadAnswer { detail, .. }) => {
            assert!(detail.contains("labels.a"), "{detail}")
        }
        other => panic!("want BadAnswer, got {other:?}"),
    }
    let _ = source.container("stop");
    serving.join().unwrap();
    let started = Instant::now();
    assert_unreachable(started, source.container(&ctr));
}
