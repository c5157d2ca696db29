//! The control plane's certificates: one CA that signs the apiserver's serving certificate and
//! the admin client certificate, and an RSA service-account signing key (RS256 is what Microsoft
//! Entra accepts from a federated issuer, so tokens minted here can be exchanged by the emulator).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize, SanType,
};

/// PEM-encoded certificates and keys for one control plane.
pub struct Pki {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// PKCS#8 RSA private key the apiserver signs service-account tokens with.
    pub sa_key_pem: String,
    /// Its public key (SubjectPublicKeyInfo PEM), which verifies those tokens.
    pub sa_pub_pem: String,
}

impl Pki {
    pub fn generate() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = dn("fhirlock-testenv-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        serving.distinguished_name = dn("kube-apiserver", None);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name = dn("admin", Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)?;

        Ok(Pki {
            ca_pem: ca_cert.pem(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            sa_pub_pem: sa_key.public_key_pem(),
            sa_key_pem: sa_key.serialize_pem(),
        })
    }

    /// Writes the files the apiserver's flags name.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        for (name, pem) in [
            ("ca.crt", &self.ca_pem),
            ("apiserver.crt", &self.serving_cert_pem),
            ("apiserver.key", &self.serving_key_pem),
            ("sa.key", &self.sa_key_pem),
            ("sa.pub", &self.sa_pub_pem),
        ] {
            std::fs::write(dir.join(name), pem)?;
        }
        Ok(())
    }
}

/// A self-signed serving certificate for `host` and its key, as PEM: what cert-manager would
/// issue for a gateway's listener.
pub fn self_signed(host: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![host.to_owned()])?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// As [`self_signed`], for several DNS names (wildcards too), valid until `days` from now
/// (rounded down to midnight UTC; negative for one that has expired).
pub fn self_signed_until(names: &[&str], days: i64) -> anyhow::Result<(String, String)> {
    use k8s_openapi::jiff::{Timestamp, ToSpan as _, tz::TimeZone};
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    let day = (Timestamp::now() + (days * 24).hours())
        .to_zoned(TimeZone::UTC)
        .date();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(day.year().into(), day.month() as u8, day.day() as u8);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}
