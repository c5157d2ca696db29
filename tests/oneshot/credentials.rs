//! Who `fhirlock audit | plan | apply` is in Azure: a person's Azure CLI login.

use super::*;

/// An `az` on the PATH that honours the contract `azure_identity`'s `AzureCliCredential` relies
/// on (azure_identity 1.0.0 `azure_cli_credential.rs`): `az account get-access-token -o json
/// --scope <scope> [--tenant T]` prints `{accessToken, expires_on, tokenType}`. It logs its
/// arguments and gets a real token from the emulator's Entra for the outsider, who stands for
/// the person logged in. Not the real CLI: `azure-cli` from PyPI is 733 MB installed.
fn az_shim(emu: &Emulator) -> (PathBuf, PathBuf) {
    let dir = emu.dir().join("az-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let log = emu.dir().join("az.log");
    let env: std::collections::HashMap<_, _> = emu.env().into_iter().collect();
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> '{log}'
[ "$1 $2" = "account get-access-token" ] || {{ echo "ERROR: not emulated" >&2; exit 2; }}
scope=$(echo "$@" | sed 's/.*--scope \([^ ]*\).*/\1/')
token=$(curl -sf --cacert '{ca}' '{authority}{tenant}/oauth2/v2.0/token' \
  -d grant_type=client_credentials -d client_id={client} -d client_secret={secret} \
  --data-urlencode "scope=$scope" | sed 's/.*"access_token":"\([^"]*\)".*/\1/') || exit 1
printf '{{"accessToken":"%s","expiresOn":"2099-01-01 00:00:00.000000","expires_on":%s,"subscription":"{sub}","tenant":"{tenant}","tokenType":"Bearer"}}\n' "$token" $(( $(date +%s) + 3000 ))
"#,
        log = log.display(),
        ca = env["FHIRLOCK_CA_BUNDLE"],
        authority = env["AZURE_AUTHORITY_HOST"].trim_end_matches('/').to_owned() + "/",
        tenant = fhirlock_testkit::TENANT,
        client = OUTSIDER_CLIENT,
        secret = OUTSIDER_SECRET,
        sub = fhirlock_testkit::SUBSCRIPTION,
    );
    let az = dir.join("az");
    std::fs::write(&az, script).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, log)
}

#[tokio::test]
async fn a_person_logged_in_with_the_azure_cli_audits_as_themselves() {
    let emu = emulator("arm-emulator-estate.yaml", 0.01);
    emu.control
        .assign_role(
            OUTSIDER_OBJECT,
            &format!("/subscriptions/{}", fhirlock_testkit::SUBSCRIPTION),
            &["read"],
        )
        .await
        .unwrap();
    let (bin_dir, log) = az_shim(&emu);
    // No secret or token file in the environment: `auto` takes the CLI's login.
    let audit = |path: String, extra: &[&str]| {
        let mut args = vec!["audit", "-f", "examples/fhir-endpoint.yaml", "-o", "json"];
        args.extend(extra);
        outcome(
            fhirlock_command(&emu, &args)
                .env_remove("AZURE_CLIENT_SECRET")
                .env_remove("AZURE_TENANT_ID")
                .env("PATH", path),
        )
    };
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let (code, out, err) = audit(path.clone(), &[]);
    assert_eq!(code, 1, "the wide-open estate has findings\n{out}\n{err}");
    let stats = emu.control.stats().await.unwrap();
    let person = fhirlock_testkit::Counts::of(&stats, OUTSIDER_OBJECT);
    assert!(person.reads >= 7 && person.writes == 0, "{person:?}");
    assert_eq!(emu.control.operator_requests().await.unwrap(), (0, 0, 0));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls.lines().all(|l| l.starts_with(
            "account get-access-token -o json --scope https://management.azure.com/.default"
        )),
        "{calls}"
    );
    // Asked for explicitly, without `az` on the PATH: a clear error, no Azure call.
    emu.control.reset_stats().await.unwrap();
    let (code, _, err) = audit("/usr/bin:/bin".into(), &["--credential", "azure-cli"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("AzureCliCredential") && err.contains("az"),
        "{err}"
    );
    assert_eq!(
        fhirlock_testkit::Counts::of(&emu.control.stats().await.unwrap(), OUTSIDER_OBJECT).total(),
        0
    );
}
