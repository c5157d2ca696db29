//! Embeds the git commit the binary was built from as `FHIRLOCK_GIT_COMMIT`, for `fhirlock
//! version`. A build from a source tarball (no `.git`, or a `.git` of some other repository
//! around it) says `unknown` rather than failing or naming a commit of the wrong repository.
//! `FHIRLOCK_GIT_COMMIT` in the build's environment wins, for builds that know their commit but
//! have no `.git` (a Docker build context without it).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FHIRLOCK_GIT_COMMIT");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let commit = std::env::var("FHIRLOCK_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| commit(&root))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FHIRLOCK_GIT_COMMIT={commit}");
    // Run again when HEAD moves: a commit, a checkout, a fetch into packed refs. Only files that
    // exist: cargo reruns a script whose watched file is missing on every build.
    let watched = git_files(&root);
    for f in &watched {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    if watched.is_empty() {
        println!("cargo:rerun-if-changed=build.rs");
    }
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The commit checked out at `root`, if `root` is the top of a git work tree.
pub fn commit(root: &Path) -> Option<String> {
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let sha = git(root, &["rev-parse", "--verify", "HEAD^{commit}"])?;
    (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// HEAD, the branch it points at, and packed-refs, where they exist.
fn git_files(root: &Path) -> Vec<PathBuf> {
    if commit(root).is_none() {
        return Vec::new();
    }
    let mut refs = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        refs.push(branch);
    }
    refs.iter()
        .filter_map(|r| git(root, &["rev-parse", "--git-path", r]))
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { root.join(p) }
        })
        .filter(|p| p.exists())
        .collect()
}
