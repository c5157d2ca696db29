//! `make release` (hack/release/release.sh): static binaries for linux/amd64 and linux/arm64, each
//! run (arm64 under QEMU's user-mode emulator), their CycloneDX SBOMs validated by the CycloneDX
//! library and held to Cargo.lock, one OCI image per architecture plus an index of both, the Helm
//! chart package, and SHA256SUMS over all of it.
//!
//! CI time: the amd64 binary is built in the release profile, as the image test builds it, so the
//! two share one build. The arm64 one is a cross build of its own, made unoptimised
//! (FHIRLOCK_RELEASE_ARM64_UNOPTIMISED): about 2 minutes cold on 2 cores, against 9 optimised.

use std::collections::BTreeSet;

use super::image::blob;
use super::*;

const ARCHES: [(&str, &str, &str); 2] = [
    (
        "amd64",
        "x86_64-unknown-linux-musl",
        "Advanced Micro Devices X86-64",
    ),
    ("arm64", "aarch64-unknown-linux-musl", "AArch64"),
];

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The (name, version) of every package Cargo.lock pins.
fn locked_packages() -> BTreeSet<(String, String)> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut out = BTreeSet::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("Cargo.lock package without {key}:\n{block}"))
                .to_owned()
        };
        out.insert((field("name"), field("version")));
    }
    out
}

/// Unpacks an OCI archive and returns its layout directory and index.json.
fn unpack(archive: &Path, into: &Path) -> Value {
    std::fs::create_dir_all(into).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into));
    json_file(&into.join("index.json"))
}

fn blob_json(layout: &Path, digest: &str) -> Value {
    json_file(&blob(layout, digest))
}

/// A validation by the CycloneDX library (hack/release/sbom.py, in the release venv).
fn cyclonedx_valid(tools: &Path, sbom: &Path) -> std::process::Output {
    Command::new(tools.join("venv/bin/python"))
        .arg(root().join("hack/release/sbom.py"))
        .arg(sbom)
        .output()
        .unwrap()
}

#[test]
fn release_has_both_architectures_their_sboms_images_chart_and_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let dist = tmp.path().join("dist");
    let out = Command::new(root().join("hack/release/release.sh"))
        .arg(&dist)
        .env("FHIRLOCK_RELEASE_ARM64_UNOPTIMISED", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "hack/release/release.sh failed");
    assert_eq!(
        text(&out.stdout).lines().last().unwrap().trim(),
        dist.to_str().unwrap()
    );
    let v = env!("CARGO_PKG_VERSION");
    let chart_yaml = yaml_file(&chart().join("Chart.yaml")).remove(0);
    let chart_version = chart_yaml["version"].as_str().unwrap().to_owned();
    let mut names: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec![
        "SHA256SUMS".to_owned(),
        format!("fhirlock-{v}-linux-amd64"),
        format!("fhirlock-{v}-linux-amd64.cdx.json"),
        format!("fhirlock-{v}-linux-amd64.oci.tar"),
        format!("fhirlock-{v}-linux-arm64"),
        format!("fhirlock-{v}-linux-arm64.cdx.json"),
        format!("fhirlock-{v}-linux-arm64.oci.tar"),
        format!("fhirlock-{v}.oci.tar"),
        format!("fhirlock-{chart_version}.tgz"),
    ];
    expected.sort();
    assert_eq!(names, expected);
    checksums(&dist, &names[1..], tmp.path());

    let tools = built("hack/release/tools.sh");
    let (qemu, skopeo) = test_tools();
    let locked = locked_packages();
    let mut manifests = Vec::new();
    for (arch, triple, machine) in ARCHES {
        let bin = dist.join(format!("fhirlock-{v}-linux-{arch}"));
        // It runs: natively on amd64, on arm64 under qemu-aarch64 (user mode: the binary is
        // static, so it needs no arm64 root filesystem).
        let runner = (arch == "arm64").then_some(qemu.as_path());
        static_binary_runs(arch, machine, &bin, runner);
        let sbom = dist.join(format!("fhirlock-{v}-linux-{arch}.cdx.json"));
        sbom_is_valid_and_locked(arch, triple, &sbom, &tools, &locked, tmp.path());
        let archive = dist.join(format!("fhirlock-{v}-linux-{arch}.oci.tar"));
        manifests.push(image_of(arch, &archive, &bin, &sbom, tmp.path()));
    }

    multi_arch_index(
        &dist.join(format!("fhirlock-{v}.oci.tar")),
        &manifests,
        &skopeo,
        tmp.path(),
    );

    // The chart package, read back by helm.
    let package = dist.join(format!("fhirlock-{chart_version}.tgz"));
    let shown = run(Command::new(helm()).args(["show", "chart"]).arg(&package));
    let shown: Value = serde_yaml::from_str(&shown).unwrap();
    assert_eq!(
        shown, chart_yaml,
        "the packaged chart is not deploy/helm/fhirlock"
    );
    assert_eq!(shown["appVersion"], v);
}

/// qemu-aarch64-static and skopeo (hack/release/test-tools.sh installs them from Debian).
fn test_tools() -> (PathBuf, PathBuf) {
    let out = Command::new(root().join("hack/release/test-tools.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "hack/release/test-tools.sh failed");
    let paths: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 2, "{}", text(&out.stdout));
    (paths[0].clone(), paths[1].clone())
}

/// The multi-arch archive: its index.json names one image index (the version's tag), which lists
/// the single-architecture manifests. skopeo, as a registry client would, picks each
/// architecture's manifest from it and copies both.
fn multi_arch_index(archive: &Path, single: &[Value], skopeo: &Path, tmp: &Path) {
    let layout = tmp.join("oci-index");
    let index = unpack(archive, &layout);
    let top = index["manifests"].as_array().unwrap();
    assert_eq!(top.len(), 1, "{index}");
    assert_eq!(
        top[0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        top[0]["annotations"]["org.opencontainers.image.ref.name"],
        env!("CARGO_PKG_VERSION")
    );
    let platforms = blob_json(&layout, top[0]["digest"].as_str().unwrap());
    let listed = platforms["manifests"].as_array().unwrap();
    let platform_and_digest = |ms: &[Value]| -> Vec<(Value, Value)> {
        ms.iter()
            .map(|m| (m["platform"].clone(), m["digest"].clone()))
            .collect()
    };
    assert_eq!(platform_and_digest(listed), platform_and_digest(single));
    assert_eq!(listed[1]["platform"]["variant"], "v8", "{platforms}");

    let source = format!("oci-archive:{}", archive.display());
    for m in single {
        let arch = m["platform"]["architecture"].as_str().unwrap();
        let picked = run(Command::new(skopeo)
            .args(["--override-os", "linux", "--override-arch", arch])
            .args(["inspect", "--config", "--raw"])
            .arg(&source));
        let picked: Value = serde_json::from_str(&picked).unwrap();
        assert_eq!(picked["architecture"], arch, "{picked}");
    }
    let copy = tmp.join("oci-copy");
    run(Command::new(skopeo)
        .args(["copy", "--all", "--quiet"])
        .arg(&source)
        .arg(format!("oci:{}", copy.display())));
    let copied = json_file(&copy.join("index.json"));
    assert_eq!(
        copied["manifests"][0]["digest"], top[0]["digest"],
        "{copied}"
    );
    for m in listed {
        blob_json(&copy, m["digest"].as_str().unwrap());
    }
}

/// SHA256SUMS names every other file once, `sha256sum --check` accepts them, and it rejects a
/// copy in which one file changed.
fn checksums(dist: &Path, others: &[String], tmp: &Path) {
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let summed: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(summed, others, "{sums}");
    run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(dist));
    let copy = tmp.join("tampered");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(dist.join("SHA256SUMS"), copy.join("SHA256SUMS")).unwrap();
    for n in others {
        std::fs::copy(dist.join(n), copy.join(n)).unwrap();
    }
    std::fs::write(copy.join(&others[others.len() - 1]), b"changed").unwrap();
    let check = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&copy)
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "a changed file passed the checksums"
    );
}

/// The binary is for `machine`, static (no program interpreter, no shared library), and says its
/// version, run directly or by `runner` (an emulator).
fn static_binary_runs(arch: &str, machine: &str, bin: &Path, runner: Option<&Path>) {
    let header = run(Command::new("readelf").arg("-hW").arg(bin));
    let read_machine = header
        .lines()
        .find_map(|l| l.trim().strip_prefix("Machine:"))
        .map(str::trim);
    assert_eq!(read_machine, Some(machine), "{arch}: {header}");
    let program = run(Command::new("readelf").arg("-lW").arg(bin));
    assert!(
        !program.contains("program interpreter"),
        "{arch} not static:\n{program}"
    );
    let dynamic = run(Command::new("readelf").arg("-dW").arg(bin));
    assert!(
        !dynamic.contains("(NEEDED)"),
        "{arch} needs shared libraries:\n{dynamic}"
    );
    let mut cmd = match runner {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let version = cmd.arg("version").output().unwrap();
    assert!(
        version.status.success(),
        "{arch}: {}",
        text(&version.stderr)
    );
    let said = text(&version.stdout);
    let v = env!("CARGO_PKG_VERSION");
    assert!(
        said.starts_with(&format!("fhirlock {v}\ncommit: ")),
        "{arch}: {said}"
    );
}

/// The SBOM is valid CycloneDX by the CycloneDX library, describes fhirlock for this target, lists
/// only packages Cargo.lock pins, what is linked in and nothing that is only built or tested; a
/// copy made invalid is refused, so the pass means something.
fn sbom_is_valid_and_locked(
    arch: &str,
    triple: &str,
    path: &Path,
    tools: &Path,
    locked: &BTreeSet<(String, String)>,
    tmp: &Path,
) {
    let valid = cyclonedx_valid(tools, path);
    assert!(valid.status.success(), "{arch}: {}", text(&valid.stderr));
    let sbom = json_file(path);
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "fhirlock");
    assert_eq!(
        sbom["metadata"]["component"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        sbom["metadata"]["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "cdx:rustc:sbom:target:triple" && p["value"] == triple),
        "{arch}: {}",
        sbom["metadata"]
    );
    let components: BTreeSet<(String, String)> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap().to_owned();
            (field("name"), field("version"))
        })
        .collect();
    let unlocked: Vec<_> = components.difference(locked).collect();
    assert!(
        unlocked.is_empty(),
        "{arch}: not in Cargo.lock: {unlocked:?}"
    );
    let has = |name: &str| components.iter().any(|(n, _)| n == name);
    for linked in [
        "kube-client",
        "rustls",
        "aws-lc-sys",
        "fhirlock-core",
        "fhirlock-arm",
    ] {
        assert!(has(linked), "{arch}: no {linked} in the SBOM");
    }
    for absent in ["fhirlock-testkit", "arm-emulator", "tempfile", "cc"] {
        assert!(
            !has(absent),
            "{arch}: {absent} is not linked in, but is in the SBOM"
        );
    }
    let mut broken = sbom.clone();
    broken["components"][0]["type"] = json!("crate");
    let broken_path = tmp.join(format!("broken-{arch}.cdx.json"));
    std::fs::write(&broken_path, broken.to_string()).unwrap();
    let refused = cyclonedx_valid(tools, &broken_path);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{arch}: a broken SBOM passed"
    );
    assert!(
        text(&refused.stderr).contains("'crate' is not one of"),
        "{}",
        text(&refused.stderr)
    );
}

/// The single-architecture image: that architecture in its index and config, and in its layer the
/// released binary and SBOM. Returns its index entry.
fn image_of(arch: &str, archive: &Path, bin: &Path, sbom: &Path, tmp: &Path) -> Value {
    let layout = tmp.join(format!("oci-{arch}"));
    let index = unpack(archive, &layout);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let m = &index["manifests"][0];
    assert_eq!(m["platform"]["architecture"], arch);
    assert_eq!(m["platform"]["os"], "linux");
    let manifest = blob_json(&layout, m["digest"].as_str().unwrap());
    let config = blob_json(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], arch);
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532");
    let layer = blob(&layout, manifest["layers"][0]["digest"].as_str().unwrap());
    let rootfs = tmp.join(format!("rootfs-{arch}"));
    std::fs::create_dir(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        read(&rootfs.join("sbom/fhirlock.cdx.json")) == read(sbom),
        "{arch}: the image's SBOM is not the one beside it"
    );
    assert!(
        read(&rootfs.join("fhirlock")) == read(bin),
        "{arch}: the image's binary is not the released one"
    );
    m.clone()
}
