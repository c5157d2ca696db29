//! The gateway listener certificate: a PEM certificate chain and key (a `kubernetes.io/tls`
//! Secret, as cert-manager writes it) converted to the PFX Application Gateway takes, and the
//! leaf's DNS names and `notAfter`, which `fhirlock_core::certificate` judges before it is used.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use fhirlock_core::Certificate;
use fhirlock_core::certificate::{CertificateStall, Expiry, check_certificate};
use p12_keystore::{KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use rustls::pki_types::pem::{PemObject, SectionKind};

/// PEM chain + key → PFX, with a fresh random password, and a fingerprint of the inputs so a
/// change of Secret is seen without reading the certificate back from Azure.
pub fn pfx_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Certificate> {
    let certs: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .context("tls.crt is not a PEM certificate chain")?;
    if certs.is_empty() {
        bail!("tls.crt holds no certificate");
    }
    let key = pkcs8_key(key_pem)?;
    let chain: Vec<p12_keystore::Certificate> = certs
        .iter()
        .map(|c| p12_keystore::Certificate::from_der(c))
        .collect::<Result<_, _>>()
        .context("tls.crt holds an unreadable certificate")?;
    let key = PrivateKey::from_der(&key).context("tls.key is not a readable private key")?;
    let mut local_id = [0u8; 20];
    aws_lc_rs::rand::fill(&mut local_id).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let mut store = KeyStore::new();
    store.add_entry(
        "fhir-tls",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_id.to_vec(), key, chain)),
    );
    let mut pw = [0u8; 24];
    aws_lc_rs::rand::fill(&mut pw).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pw);
    let pfx = store.writer(&password).write().context("writing the PFX")?;
    Ok(Certificate::Pfx {
        data_base64: base64::engine::general_purpose::STANDARD.encode(pfx),
        password,
        fingerprint: fingerprint(cert_pem, key_pem),
    })
}

/// The PFX for a listener on `host`, and the leaf's expiry as of `now` (Unix seconds), once
/// `fhirlock_core::certificate::check_certificate` has found that the leaf covers `host`. A
/// certificate that does not parse is `InvalidCertificate`; one for another host
/// `CertificateHostMismatch`.
pub fn listener(
    host: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: i64,
) -> Result<(Certificate, Expiry), CertificateStall> {
    let invalid = |e: anyhow::Error| CertificateStall {
        reason: "InvalidCertificate",
        message: format!("{e:#}"),
    };
    let leaf = leaf(cert_pem).map_err(invalid)?;
    let expiry = check_certificate(host, &leaf.dns_names, leaf.not_after, now)?;
    Ok((pfx_from_pem(cert_pem, key_pem).map_err(invalid)?, expiry))
}

/// Now, in Unix seconds, for [`listener`].
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// SHA-256 over the certificate and key, hex; identifies the Secret's content, reveals nothing.
pub fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(cert_pem);
    ctx.update(key_pem);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What fhirlock checks in the leaf certificate (the first of tls.crt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The DNS names of its subjectAltName extension.
    pub dns_names: Vec<String>,
    /// Its `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// The leaf of a PEM chain: its DNS names and expiry.
pub fn leaf(cert_pem: &[u8]) -> anyhow::Result<Leaf> {
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .context("tls.crt holds no certificate")?
        .context("tls.crt is not a PEM certificate chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("tls.crt's first certificate is not X.509: {e}"))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => bail!("tls.crt's subjectAltName is unreadable: {e}"),
    };
    Ok(Leaf {
        dns_names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The key as PKCS#8 DER. cert-manager writes PKCS#1 RSA keys by default, and OpenSSL's `ecparam
/// -genkey` SEC1 EC keys (RFC 5915); both are re-encoded.
fn pkcs8_key(key_pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(key_pem) {
        let (kind, der) = item.context("tls.key is not PEM")?;
        match kind {
            SectionKind::PrivateKey => return Ok(der),
            SectionKind::RsaPrivateKey => return Ok(wrap_pkcs1(&der)),
            SectionKind::EcPrivateKey => return sec1_to_pkcs8(&der),
            _ => continue,
        }
    }
    bail!("tls.key holds no private key")
}

/// A SEC1 `ECPrivateKey` on one of the curves Application Gateway's TLS policies name (P-256,
/// P-384; P-521 too) as PKCS#8. aws-lc reads the curve from the key's parameters.
fn sec1_to_pkcs8(der: &[u8]) -> anyhow::Result<Vec<u8>> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
        ECDSA_P521_SHA512_ASN1_SIGNING, EcdsaKeyPair,
    };
    for alg in [
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &ECDSA_P384_SHA384_ASN1_SIGNING,
        &ECDSA_P521_SHA512_ASN1_SIGNING,
    ] {
        if let Ok(key) = EcdsaKeyPair::from_private_key_der(alg, der) {
            let doc = key
                .to_pkcs8v1()
                .map_err(|_| anyhow::anyhow!("tls.key: re-encoding the EC key failed"))?;
            return Ok(doc.as_ref().to_vec());
        }
    }
    bail!("tls.key is an EC key on a curve other than P-256, P-384 or P-521, or unreadable")
}

/// PKCS#1 RSAPrivateKey → PKCS#8 PrivateKeyInfo { version 0, rsaEncryption, OCTET STRING }.
fn wrap_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    const RSA_ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut inner = vec![0x02, 0x01, 0x00];
    inner.extend_from_slice(RSA_ALG);
    inner.push(0x04);
    inner.extend(der_len(pkcs1.len()));
    inner.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(inner.len()));
    out.extend(inner);
    out
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["fhir.trust.nhs.uk".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pem_pair_becomes_a_pfx_that_opens_with_its_password() {
        let (cert, key) = self_signed();
        let Certificate::Pfx {
            data_base64,
            password,
            fingerprint,
        } = pfx_from_pem(cert.as_bytes(), key.as_bytes()).unwrap()
        else {
            panic!("not a PFX")
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(data_base64)
            .unwrap();
        let store =
            KeyStore::from_pkcs12(&der, &password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
                .unwrap();
        let (_, chain) = store.private_key_chain().expect("a key chain");
        assert!(
            chain.certs()[0].subject().contains("rcgen") || !chain.certs()[0].subject().is_empty()
        );
        assert_eq!(fingerprint.len(), 64);
        assert!(
            KeyStore::from_pkcs12(&der, "wrong", p12_keystore::Pkcs12ImportPolicy::Relaxed)
                .is_err()
        );
    }

    #[test]
    fn the_fingerprint_changes_with_the_secret_and_only_then() {
        let (c1, k1) = self_signed();
        let (c2, k2) = self_signed();
        assert_eq!(
            fingerprint(c1.as_bytes(), k1.as_bytes()),
            fingerprint(c1.as_bytes(), k1.as_bytes())
        );
        assert_ne!(
            fingerprint(c1.as_bytes(), k1.as_bytes()),
            fingerprint(c2.as_bytes(), k2.as_bytes())
        );
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        let (cert, _) = self_signed();
        assert!(
            pfx_from_pem(b"nope", b"nope")
                .unwrap_err()
                .to_string()
                .contains("tls.crt")
        );
        assert!(
            pfx_from_pem(cert.as_bytes(), b"nope")
                .unwrap_err()
                .to_string()
                .contains("tls.key")
        );
    }

    #[test]
    fn pkcs1_rsa_keys_are_wrapped_as_pkcs8() {
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let pkcs8 = rsa.serialize_der();
        // A PKCS#8 RSA key's inner OCTET STRING is the PKCS#1 key; re-wrapping it gives the same DER.
        let inner_start = pkcs8
            .windows(RSA_OID.len())
            .position(|w| w == RSA_OID)
            .unwrap()
            + RSA_OID.len()
            + 2;
        let (len_bytes, len) = match pkcs8[inner_start - 1] {
            0x82 => (
                2,
                u16::from_be_bytes([pkcs8[inner_start], pkcs8[inner_start + 1]]) as usize,
            ),
            0x81 => (1, pkcs8[inner_start] as usize),
            n => (0, n as usize),
        };
        let pkcs1 = &pkcs8[inner_start + len_bytes..inner_start + len_bytes + len];
        assert_eq!(wrap_pkcs1(pkcs1), pkcs8);
    }

    /// An EC certificate for `names` and its key as SEC1 PEM (`EC PRIVATE KEY`), as
    /// `openssl ecparam -genkey` writes it, and as PKCS#8 PEM.
    fn ec_pair(
        alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
        rcgen_alg: &'static rcgen::SignatureAlgorithm,
        names: &[&str],
    ) -> (String, String, String) {
        use aws_lc_rs::encoding::AsDer as _;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec()),
            rcgen_alg,
        )
        .unwrap();
        let cert =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap()
                .self_signed(&key)
                .unwrap();
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        (
            cert.pem(),
            pem("EC PRIVATE KEY", sec1.as_ref()),
            pem("PRIVATE KEY", pkcs8.as_ref()),
        )
    }

    /// The PFX's key and its leaf certificate.
    fn opened(c: Certificate) -> (Vec<u8>, Vec<u8>) {
        let Certificate::Pfx {
            data_base64,
            password,
            ..
        } = c
        else {
            panic!("not a PFX")
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(data_base64)
            .unwrap();
        let store =
            KeyStore::from_pkcs12(&der, &password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
                .unwrap();
        let (_, chain) = store.private_key_chain().expect("a key chain");
        (
            chain.key().as_der().to_vec(),
            chain.certs()[0].as_der().to_vec(),
        )
    }

    #[test]
    fn ec_keys_in_sec1_and_pkcs8_become_a_pfx_with_the_same_key() {
        use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
        for (alg, rcgen_alg) in [
            (
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            (
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ),
        ] {
            let (cert, sec1, pkcs8) = ec_pair(alg, rcgen_alg, &["fhir.trust.nhs.uk"]);
            assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
            let from_sec1 = opened(pfx_from_pem(cert.as_bytes(), sec1.as_bytes()).unwrap());
            let from_pkcs8 = opened(pfx_from_pem(cert.as_bytes(), pkcs8.as_bytes()).unwrap());
            // The PFX's key is the certificate's: its public half is the one in the certificate.
            let key = EcdsaKeyPair::from_pkcs8(alg, &from_sec1.0).unwrap();
            let (_, x509) = x509_parser::parse_x509_certificate(&from_sec1.1).unwrap();
            assert_eq!(
                key.public_key().as_ref(),
                x509.public_key().subject_public_key.data.as_ref()
            );
            assert_eq!(
                EcdsaKeyPair::from_pkcs8(alg, &from_pkcs8.0)
                    .unwrap()
                    .public_key()
                    .as_ref(),
                key.public_key().as_ref()
            );
        }
        // An EC key that does not parse says so.
        let bad = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let (cert, _) = self_signed();
        let err = pfx_from_pem(cert.as_bytes(), bad.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("tls.key"), "{err}");
    }

    #[test]
    fn the_leaf_gives_its_dns_names_and_not_after() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "fhir.trust.nhs.uk".to_owned(),
            "*.fhir.trust.nhs.uk".to_owned(),
        ])
        .unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([10, 20, 1, 10].into()));
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let leaf_cert = params.self_signed(&key).unwrap();
        // The chain's first certificate is the leaf; an issuer after it is not read.
        let (issuer, _) = self_signed();
        let chain = format!("{}{issuer}", leaf_cert.pem());
        assert_eq!(
            leaf(chain.as_bytes()).unwrap(),
            Leaf {
                dns_names: vec!["fhir.trust.nhs.uk".into(), "*.fhir.trust.nhs.uk".into()],
                not_after: 1_936_742_400, // 2031-05-17T00:00:00Z
            }
        );
        assert!(leaf(b"nope").unwrap_err().to_string().contains("tls.crt"));
    }

    const RSA_OID: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
}
