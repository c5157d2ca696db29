//! Minimal JWT (JWS compact) signing and verification: RS256 for the tokens the emulator issues,
//! RS256/ES256 for federated client assertions (Kubernetes service-account tokens are RS256 by
//! default, ES256 when the cluster uses an EC signing key).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("unsupported signing algorithm {0}")]
    Algorithm(String),
    #[error("no key with kid {0:?} in the issuer's key set")]
    UnknownKey(Option<String>),
    #[error("signature verification failed")]
    BadSignature,
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim_end_matches('=')).ok()
}

/// The emulator's token-signing key (RS256), persisted as PKCS#8 in the data directory.
pub struct SigningKey {
    pair: RsaKeyPair,
    pub kid: String,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
        Self::from_pair(pair)
    }

    pub fn pkcs8(&self) -> Vec<u8> {
        let der: aws_lc_rs::encoding::Pkcs8V1Der = self.pair.as_der().expect("pkcs8");
        der.as_ref().to_vec()
    }

    pub fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        RsaKeyPair::from_pkcs8(der).ok().map(Self::from_pair)
    }

    fn from_pair(pair: RsaKeyPair) -> SigningKey {
        let n = pair
            .public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &n);
        let kid = b64(&digest.as_ref()[..12]);
        SigningKey { pair, kid }
    }

    /// The public key as a JWK (for the tenant's `discovery/v2.0/keys`).
    pub fn jwk(&self) -> Value {
        let pk = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .expect("rsa sign");
        format!("{input}.{}", b64(&sig))
    }
}

/// A decoded, not yet verified token.
pub struct Decoded {
    pub header: Value,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

pub fn decode(token: &str) -> Result<Decoded, JwtError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(JwtError::Malformed);
    }
    let header: Value = b64_decode(parts[0])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let claims: Value = b64_decode(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let signature = b64_decode(parts[2]).ok_or(JwtError::Malformed)?;
    if !claims.is_object() {
        return Err(JwtError::Malformed);
    }
    Ok(Decoded {
        header,
        claims,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature,
    })
}

impl Decoded {
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Verifies the signature against a JWKS document (`{"keys":[…]}`).
    pub fn verify(&self, jwks: &Value) -> Result<(), JwtError> {
        let alg = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kid = self.kid();
        let candidates: Vec<&Value> = keys
            .iter()
            .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
            .collect();
        if candidates.is_empty() {
            return Err(JwtError::UnknownKey(kid.map(str::to_string)));
        }
        for key in candidates {
            let ok = match alg {
                "RS256" => {
                    let (Some(n), Some(e)) = (field(key, "n"), field(key, "e")) else {
                        continue;
                    };
                    signature::RsaPublicKeyComponents { n: &n, e: &e }
                        .verify(
                            &signature::RSA_PKCS1_2048_8192_SHA256,
                            self.signing_input.as_bytes(),
                            &self.signature,
                        )
                        .is_ok()
                }
                "ES256" => {
                    let (Some(x), Some(y)) = (field(key, "x"), field(key, "y")) else {
                        continue;
                    };
                    let mut point = vec![4u8];
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                        .verify(self.signing_input.as_bytes(), &self.signature)
                        .is_ok()
                }
                other => return Err(JwtError::Algorithm(other.to_string())),
            };
            if ok {
                return Ok(());
            }
        }
        Err(JwtError::BadSignature)
    }
}

fn field(key: &Value, name: &str) -> Option<Vec<u8>> {
    key.get(name).and_then(Value::as_str).and_then(b64_decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_roundtrip_and_tamper_detection() {
        let key = SigningKey::generate();
        let jwks = json!({"keys": [key.jwk()]});
        let token = key.sign(&json!({"aud": "x", "exp": 1}));
        let d = decode(&token).unwrap();
        assert_eq!(d.claims["aud"], "x");
        assert_eq!(d.verify(&jwks), Ok(()));

        // Re-sign the claims with another key: same kid lookup fails, so signature is bad.
        let other = SigningKey::generate();
        let forged = other.sign(&json!({"aud": "x"}));
        let d = decode(&forged).unwrap();
        assert!(matches!(d.verify(&jwks), Err(JwtError::UnknownKey(_))));
        let mut other_jwk = other.jwk();
        other_jwk["kid"] = json!(key.kid);
        let forged_same_kid = {
            let parts: Vec<&str> = forged.split('.').collect();
            let header = b64(json!({"alg":"RS256","kid":key.kid}).to_string().as_bytes());
            format!("{header}.{}.{}", parts[1], parts[2])
        };
        assert_eq!(
            decode(&forged_same_kid).unwrap().verify(&jwks),
            Err(JwtError::BadSignature)
        );
        assert!(decode("a.b").is_err());
    }

    #[test]
    fn pkcs8_roundtrip_keeps_kid() {
        let key = SigningKey::generate();
        let again = SigningKey::from_pkcs8(&key.pkcs8()).unwrap();
        assert_eq!(key.kid, again.kid);
    }
}
