//! What a platform team installs besides the operator, checked with the real tools: `fhirlock
//! version`, the completion scripts loaded into real bash, zsh and fish, and the kubectl plugin
//! found and run by the pinned kubectl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fhirlock_tests::emulator::{bin, emulator};
use fhirlock_tests::text;

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fhirlock(args: &[&str]) -> String {
    ok(
        Command::new(bin("fhirlock")).args(args).output().unwrap(),
        &format!("fhirlock {args:?}"),
    )
}

/// `fhirlock version`'s commit line: `commit: <sha>`.
fn commit_of(version: &str) -> String {
    version
        .lines()
        .find_map(|l| l.strip_prefix("commit: "))
        .unwrap_or_else(|| panic!("no commit line in:\n{version}"))
        .to_owned()
}

#[test]
fn version_prints_the_crate_version_and_the_commit_it_was_built_from() {
    let out = fhirlock(&["version"]);
    assert_eq!(
        out.lines().next(),
        Some(format!("fhirlock {}", env!("CARGO_PKG_VERSION")).as_str()),
        "{out}"
    );
    let commit = commit_of(&out);
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "built inside the repository, so a commit, not {commit:?}"
    );
    // The commit the binary was built from is HEAD, or behind it if someone has committed since.
    let root = testenv::workspace_root();
    let git = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["merge-base", "--is-ancestor", &commit, "HEAD"])
        .status()
        .unwrap();
    assert!(git.success(), "{commit} is not HEAD or an ancestor of it");
    let long = fhirlock(&["--version"]);
    assert_eq!(
        long.trim(),
        format!("fhirlock {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// bash, zsh and fish, installed by the project's own script when missing.
fn shells() -> [PathBuf; 3] {
    let script = testenv::workspace_root().join("hack/shells/ensure.sh");
    let out = ok(
        Command::new(&script).output().unwrap(),
        "hack/shells/ensure.sh",
    );
    let paths: Vec<PathBuf> = out.lines().map(PathBuf::from).collect();
    [paths[0].clone(), paths[1].clone(), paths[2].clone()]
}

/// Runs `script` in `shell -c`, with `$FHIRLOCK` the binary under test.
fn in_shell(shell: &Path, script: &str) -> String {
    ok(
        Command::new(shell)
            .arg("-c")
            .arg(script)
            .env("FHIRLOCK", bin("fhirlock"))
            .output()
            .unwrap(),
        &format!("{} -c {script:?}", shell.display()),
    )
}

/// What bash's programmable completion offers for `line` (the cursor at its end), through the
/// function `fhirlock completion bash` registers, called as readline would.
fn bash_completes(bash: &Path, line: &str) -> Vec<String> {
    let script = format!(
        r#"source <("$FHIRLOCK" completion bash) || exit 3
spec=$(complete -p fhirlock) || exit 4
fn=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_LINE={line:?}; COMP_POINT=${{#COMP_LINE}}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMPREPLY=()
"$fn" fhirlock "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#
    );
    let mut got: Vec<String> = in_shell(bash, &script)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    got.sort();
    got
}

#[test]
fn completion_scripts_load_into_bash_zsh_and_fish_and_complete_subcommands() {
    let [bash, zsh, fish] = shells();

    // bash: the script registers a completion function for fhirlock.
    let spec = in_shell(
        &bash,
        r#"source <("$FHIRLOCK" completion bash) && complete -p fhirlock"#,
    );
    assert!(
        spec.starts_with("complete ") && spec.contains(" -F ") && spec.trim().ends_with("fhirlock"),
        "{spec}"
    );
    assert_eq!(bash_completes(&bash, "fhirlock pl"), ["plan"]);
    assert_eq!(bash_completes(&bash, "fhirlock c"), ["completion", "crd"]);
    let shells_offered: Vec<String> = bash_completes(&bash, "fhirlock completion ")
        .into_iter()
        .filter(|c| !c.starts_with('-'))
        .collect();
    assert_eq!(shells_offered, ["bash", "fish", "zsh"]);
    assert!(
        bash_completes(&bash, "fhirlock audit --out").contains(&"--output".to_owned()),
        "a subcommand's flags complete too"
    );
    // The check can fail: nothing completes what is no subcommand.
    assert!(bash_completes(&bash, "fhirlock zz").is_empty());

    // zsh: compinit loads, and the script defines and registers _fhirlock.
    let z = in_shell(
        &zsh,
        r#"autoload -Uz compinit && compinit -u -d "${TMPDIR:-/tmp}/fhirlock-zcompdump-$$" || exit 3
source <("$FHIRLOCK" completion zsh) || exit 4
print -r -- "registered=${_comps[fhirlock]}"
whence -w _fhirlock
rm -f "${TMPDIR:-/tmp}/fhirlock-zcompdump-$$""#,
    );
    assert!(z.contains("registered=_fhirlock"), "{z}");
    assert!(z.contains("_fhirlock: function"), "{z}");

    // fish: the completions it offers for a partial command line.
    let fish_completes = |line: &str| -> Vec<String> {
        let mut got: Vec<String> = in_shell(
            &fish,
            &format!(r#""$FHIRLOCK" completion fish | source; complete --do-complete {line:?}"#),
        )
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect();
        got.sort();
        got
    };
    assert_eq!(fish_completes("fhirlock pl"), ["plan"]);
    // clap_complete's fish script completes option values, not positional ones.
    assert_eq!(
        fish_completes("fhirlock audit --output "),
        ["json", "sarif", "table"]
    );
    assert_eq!(fish_completes("fhirlock audit --out"), ["--output"]);
    assert!(fish_completes("fhirlock zz").is_empty());
}

#[test]
fn kubectl_finds_the_plugin_and_runs_its_read_only_commands() {
    let kubectl = testenv::kubectl().unwrap();
    // The link, as the image and the install docs provide it.
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-fhirlock");
    std::os::unix::fs::symlink(bin("fhirlock"), &plugin).unwrap();
    let path = std::env::join_paths(
        [dir.path().to_owned(), kubectl.parent().unwrap().to_owned()]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .unwrap();
    // No cluster needed: kubectl runs a plugin before it loads any configuration.
    let kubectl_with = |args: &[&str]| {
        Command::new(&kubectl)
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", dir.path().join("none"))
            .output()
            .unwrap()
    };
    let list = text(&kubectl_with(&["plugin", "list"]).stdout);
    assert!(
        list.lines().any(|l| l.trim() == plugin.to_str().unwrap()),
        "kubectl plugin list does not show {}:\n{list}",
        plugin.display()
    );

    let version = ok(
        kubectl_with(&["fhirlock", "version"]),
        "kubectl fhirlock version",
    );
    assert_eq!(version, fhirlock(&["version"]));
    // scan is read-only, so the plugin has it too.
    let scan = kubectl_with(&["fhirlock", "scan", "--help"]);
    assert!(
        scan.status.success() && text(&scan.stdout).contains("--subscription"),
        "kubectl fhirlock scan --help: {}",
        text(&scan.stderr)
    );

    // Only audit, plan, scan and version: nothing that writes to Azure or runs the operator.
    for refused in [
        &["fhirlock", "run"][..],
        &["fhirlock", "apply", "-f", "x.yaml"],
    ] {
        let out = kubectl_with(refused);
        assert_eq!(out.status.code(), Some(2), "{refused:?}");
        assert!(
            text(&out.stderr).contains("kubectl fhirlock"),
            "{refused:?}: {}",
            text(&out.stderr)
        );
    }

    // audit through kubectl, against the emulator's wide-open estate: exit 1, findings.
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    let endpoint = testenv::workspace_root().join("examples/fhir-endpoint.yaml");
    let out = Command::new(&kubectl)
        .args([
            "fhirlock",
            "audit",
            "-f",
            endpoint.to_str().unwrap(),
            "-o",
            "json",
        ])
        .env("PATH", &path)
        .env("KUBECONFIG", dir.path().join("none"))
        .envs(emu.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "SiteDefaultAllow"),
        "the wide-open site's finding: {report}"
    );
}
