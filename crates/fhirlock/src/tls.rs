//! The gateway listener certificate: a PEM certificate chain and key (a `kubernetes.io/tls`
//! Secret, as cert-manager writes it) converted to the PFX Application Gateway takes.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use fhirlock_core::Certificate;
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

/// The key as PKCS#8 DER. cert-manager writes PKCS#1 RSA keys by default; those are wrapped.
fn pkcs8_key(key_pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(key_pem) {
        let (kind, der) = item.context("tls.key is not PEM")?;
        match kind {
            SectionKind::PrivateKey => return Ok(der),
            SectionKind::RsaPrivateKey => return Ok(wrap_pkcs1(&der)),
            SectionKind::EcPrivateKey => {
                bail!(
                    "tls.key is a SEC1 EC key: write it as PKCS#8 (cert-manager: privateKey.encoding: PKCS8)"
                )
            }
            _ => continue,
        }
    }
    bail!("tls.key holds no private key")
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

    const RSA_OID: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
}
