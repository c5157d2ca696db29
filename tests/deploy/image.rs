//! The container image: static, non-root, without a shell, and the Dockerfile that builds the
//! same.

use super::*;

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

pub(super) fn blob(layout: &Path, digest: &str) -> PathBuf {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert_eq!(
        sha256_file(&path),
        digest,
        "{} does not match its digest",
        path.display()
    );
    path
}

#[test]
fn image_is_static_non_root_and_runs_without_a_shell() {
    // `make image` (hack/image/build.sh): a cargo build of the static binary, then the layout.
    let out = Command::new(root().join("hack/image/build.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "hack/image/build.sh failed");
    let layout = PathBuf::from(text(&out.stdout).lines().last().unwrap().trim());
    let read = |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    assert_eq!(
        read(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read(&layout.join("index.json"));
    let m = &index["manifests"][0];
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        m["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    let manifest = read(&blob(&layout, m["digest"].as_str().unwrap()));
    let config = read(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "runs as the non-root user");
    assert_eq!(
        c["Entrypoint"],
        json!(["/fhirlock"]),
        "no shell in the entrypoint"
    );
    assert_eq!(c["Cmd"], json!(["run"]));
    assert_eq!(config["os"], "linux");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let layer = blob(&layout, manifest["layers"][0]["digest"].as_str().unwrap());

    // The layer: the binary, a CA bundle, passwd/group and /tmp; no shell, nothing else.
    let listing = run(Command::new("tar").arg("-tvzf").arg(&layer));
    // A link's line ends "name -> target".
    let names: Vec<&str> = listing
        .lines()
        .map(|l| {
            l.split(" -> ")
                .next()
                .unwrap()
                .split_whitespace()
                .last()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/group",
            "etc/passwd",
            "etc/ssl/",
            "etc/ssl/certs/",
            "etc/ssl/certs/ca-certificates.crt",
            "fhirlock",
            "kubectl-fhirlock",
            "home/",
            "home/nonroot/",
            "tmp/",
        ]
    );
    let fhirlock_line = listing.lines().find(|l| l.ends_with(" fhirlock")).unwrap();
    assert!(
        fhirlock_line.starts_with("-rwxr-xr-x root/root")
            || fhirlock_line.starts_with("-rwxr-xr-x 0/0"),
        "{fhirlock_line}"
    );
    // The kubectl plugin: a link to the binary, which kubectl finds on PATH by that name.
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with(" kubectl-fhirlock -> fhirlock")),
        "{listing}"
    );
    let rootfs = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(rootfs.path()));
    let passwd = std::fs::read_to_string(rootfs.path().join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"));

    // A static executable: no program interpreter, no shared library.
    let bin = rootfs.path().join("fhirlock");
    let headers = run(Command::new("readelf").args(["-lW"]).arg(&bin));
    assert!(
        !headers.contains("program interpreter"),
        "not static:\n{headers}"
    );
    let dynamic = run(Command::new("readelf").args(["-dW"]).arg(&bin));
    assert!(
        !dynamic.contains("(NEEDED)"),
        "needs shared libraries:\n{dynamic}"
    );
    // musl, not static glibc. glibc's crt1.o gives every glibc executable an NT_GNU_ABI_TAG note,
    // and static glibc carries its GLIBC_TUNABLES parser; musl has neither, and its strerror names
    // errno 0 "No error information" (glibc: "Success").
    let notes = run(Command::new("readelf").args(["-nW"]).arg(&bin));
    assert!(
        !notes.contains("NT_GNU_ABI_TAG"),
        "glibc's ABI note:\n{notes}"
    );
    let elf = std::fs::read(&bin).unwrap();
    let has = |s: &str| elf.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(!has("GLIBC_TUNABLES"), "static glibc is linked in");
    assert!(has("No error information"), "musl's libc is not linked in");

    // Run it as the image would run: inside the layer's filesystem alone, as 65532, with no
    // shell. Needs root for chroot (CI and the dev machines run as root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("image test: not root, so the binary is not run inside the image's filesystem");
        return;
    }
    // The devices every OCI runtime gives a container. The musl binary gets randomness from the
    // getrandom(2) system call, not from these files, but a container has them.
    std::fs::create_dir(rootfs.path().join("dev")).unwrap();
    for (name, minor) in [("null", "3"), ("random", "8"), ("urandom", "9")] {
        let node = rootfs.path().join("dev").join(name);
        run(Command::new("mknod")
            .args(["-m", "666"])
            .arg(&node)
            .args(["c", "1", minor]));
    }
    let chrooted_as = |program: &str, args: &[&str], env: &[(&str, String)]| {
        // Found on this PATH: the command runs with an empty environment.
        let chroot = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join("chroot"))
            .find(|p| p.is_file())
            .expect("chroot (coreutils)");
        let mut cmd = Command::new(chroot);
        cmd.arg("--userspec=65532:65532")
            .arg(rootfs.path())
            .arg(program)
            .args(args)
            .env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let chrooted = |args: &[&str], env: &[(&str, String)]| chrooted_as("/fhirlock", args, env);
    let crd = chrooted(&["crd"], &[]);
    assert!(crd.status.success(), "{}", text(&crd.stderr));
    assert_eq!(
        text(&crd.stdout),
        std::fs::read_to_string(root().join("crds/securedfhirendpoints.fhirlock.io.yaml")).unwrap()
    );
    // Through the link, the binary is the kubectl plugin: the read-only commands only.
    let version = chrooted_as("/kubectl-fhirlock", &["version"], &[]);
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert!(
        text(&version.stdout).starts_with(&format!("fhirlock {}\n", env!("CARGO_PKG_VERSION"))),
        "{}",
        text(&version.stdout)
    );
    let run = chrooted_as("/kubectl-fhirlock", &["run"], &[]);
    assert_eq!(run.status.code(), Some(2), "the plugin has no run");
    assert!(
        text(&run.stderr).contains("kubectl fhirlock"),
        "{}",
        text(&run.stderr)
    );

    // Name resolution (musl's own resolver, /etc/hosts as the kubelet mounts it), TLS
    // with an extra CA, an Entra token and ARM reads: `fhirlock audit` against the emulator,
    // reached as "localhost".
    let emu = fhirlock_tests::emulator::emulator("arm-emulator-estate.yaml", 0.01);
    std::fs::write(rootfs.path().join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::copy(
        &emu.ready.ca_path,
        rootfs.path().join("tmp/emulator-ca.pem"),
    )
    .unwrap();
    std::fs::copy(
        root().join("examples/fhir-endpoint.yaml"),
        rootfs.path().join("tmp/endpoint.yaml"),
    )
    .unwrap();
    let env: Vec<(&str, String)> = emu
        .env()
        .into_iter()
        .map(|(k, v)| match k {
            "FHIRLOCK_ARM_ENDPOINT" | "AZURE_AUTHORITY_HOST" => {
                (k, v.replace("127.0.0.1", "localhost"))
            }
            "FHIRLOCK_CA_BUNDLE" => (k, "/tmp/emulator-ca.pem".to_owned()),
            _ => (k, v),
        })
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| *k == "FHIRLOCK_ARM_ENDPOINT" && v.contains("//localhost:")),
        "{env:?}"
    );
    let audit = chrooted(&["audit", "-f", "/tmp/endpoint.yaml", "-o", "json"], &env);
    assert_eq!(
        audit.status.code(),
        Some(1),
        "audit of the wide-open estate from inside the image should exit 1 (findings):\n{}{}",
        text(&audit.stdout),
        text(&audit.stderr)
    );
    let report: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(!report.to_string().is_empty());
}

#[test]
fn dockerfile_builds_the_same_image() {
    // For users with Docker: the same static build, user and entrypoint as `make image`.
    let d = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for needle in [
        "rustup target add x86_64-unknown-linux-musl",
        "CC_x86_64_unknown_linux_musl=musl-gcc",
        "--target x86_64-unknown-linux-musl",
        "FROM scratch",
        "USER 65532:65532",
        r#"ENTRYPOINT ["/fhirlock"]"#,
        "ln -s fhirlock /rootfs/kubectl-fhirlock",
        r#"CMD ["run"]"#,
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(d.contains(needle), "Dockerfile lacks {needle:?}");
    }
}
