//! Bearer tokens: ES256 JWTs signed with a P-256 key the server creates on first start and keeps
//! (0600) in its root folder, and verification of those and of an external token server's
//! (trusted certificate bundle or JWKS), as Docker's registry does.
//!
//! Over 800 lines, for one concern: the token format, from signing key to verified claims. A
//! third of it is the unit tests of each trust path.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::PublicKeyData as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::AuthError;
use super::scope::{action_name, kind_name};
use super::seam::{Access, Action, ResourceKind};

/// Leeway on `exp`/`nbf`, as Docker's registry allows for clock skew.
pub const LEEWAY_SECONDS: u64 = 60;
/// Marks refresh tokens: their audience is `<service>` + this, so they never pass as access tokens.
const REFRESH_AUDIENCE_SUFFIX: &str = "#refresh";

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// One entry of the JWT `access` claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClaimAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl ClaimAccess {
    pub fn from_access(a: &Access) -> ClaimAccess {
        ClaimAccess {
            kind: kind_name(a.kind).to_string(),
            name: a.name.clone(),
            actions: a
                .actions
                .iter()
                .map(|x| action_name(*x).to_string())
                .collect(),
        }
    }

    /// Whether this entry grants every action of `wanted`. `*` grants everything.
    pub fn covers(&self, wanted: &Access) -> bool {
        self.kind == kind_name(wanted.kind)
            && self.name == wanted.name
            && wanted.actions.iter().all(|w| {
                self.actions
                    .iter()
                    .any(|a| a == "*" || (*w != Action::All && a == action_name(*w)))
            })
    }
}

/// `aud` may be one string or a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    #[serde(default)]
    pub iat: u64,
    #[serde(default)]
    pub jti: String,
    #[serde(default)]
    pub access: Vec<ClaimAccess>,
}

impl AccessClaims {
    /// Whether the token grants every wanted access.
    pub fn covers(&self, wanted: &[Access]) -> bool {
        wanted
            .iter()
            .all(|w| self.access.iter().any(|a| a.covers(w)))
    }

    /// The subject, `None` when anonymous (empty `sub`).
    pub fn subject(&self) -> Option<&str> {
        (!self.sub.is_empty()).then_some(self.sub.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    /// The credential fingerprint at issue time: a new password revokes the token.
    fpr: String,
}

/// libtrust key id, as Docker's registry computes it: base32 (no padding) of the first 30 bytes
/// of SHA-256(SPKI DER), in 12 groups of 4 characters joined with `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(spki_der);
    let mut b32 = String::with_capacity(48);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in &digest[..30] {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            b32.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    // 240 bits are exactly 48 base32 characters: nothing left over.
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// A random identifier (hex) from the OS.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// The server's own ES256 signing key.
pub struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    public_point: Vec<u8>,
    spki_der: Vec<u8>,
    /// Derived from the private key: keys refresh-token fingerprints.
    derived_secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_key_pair(pair: &rcgen::KeyPair) -> SigningKey {
        let der = pair.serialized_der();
        let mut h = Sha256::new();
        h.update(b"wharf-registry refresh fingerprint v1\0");
        h.update(der);
        SigningKey {
            encoding: EncodingKey::from_ec_der(der),
            kid: libtrust_key_id(&pair.subject_public_key_info()),
            public_point: pair.public_key_raw().to_vec(),
            spki_der: pair.subject_public_key_info(),
            derived_secret: h.finalize().into(),
        }
    }

    /// A fresh key that is not stored anywhere (tests).
    pub fn generate() -> Result<SigningKey, AuthError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            AuthError::Key {
                path: PathBuf::new(),
                message: e.to_string(),
            }
        })?;
        Ok(Self::from_key_pair(&pair))
    }

    /// A fresh key as PEM (PKCS#8, P-256), for a signing key kept elsewhere than in a file
    /// (the shared storage of replicas).
    pub fn generate_pem() -> Result<String, AuthError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            AuthError::Key {
                path: PathBuf::new(),
                message: e.to_string(),
            }
        })?;
        Ok(pair.serialize_pem())
    }

    /// Load the PEM (PKCS#8, P-256) key at `path`, or create it (mode 0600, folder 0700) when
    /// it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<SigningKey, AuthError> {
        let key_err = |message: String| AuthError::Key {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| key_err(e.to_string()))?;
                if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
                    return Err(key_err("not a P-256 (ES256) key".to_string()));
                }
                Ok(Self::from_key_pair(&pair))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| key_err(e.to_string()))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(AuthError::io(dir))?;
                }
                // create_new: two servers starting on one root never overwrite each other's key.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(AuthError::io(path))?;
                file.write_all(pair.serialize_pem().as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(AuthError::io(path))?;
                tracing::info!(path = %path.display(), "created the token signing key");
                Ok(Self::from_key_pair(&pair))
            }
            Err(e) => Err(AuthError::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn derived_secret(&self) -> [u8; 32] {
        self.derived_secret
    }

    /// The key that verifies this key's signatures.
    pub fn verifying_key(&self) -> TrustedKey {
        TrustedKey {
            key: DecodingKey::from_ec_components(
                &b64url(&self.public_point[1..33]),
                &b64url(&self.public_point[33..]),
            )
            .unwrap_or_else(|_| DecodingKey::from_ec_der(&self.public_point)),
            algorithms: vec![Algorithm::ES256],
            cert_der: None,
        }
    }

    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_string());
        header.kid = Some(self.kid.clone());
        header
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        jsonwebtoken::encode(&self.header(), claims, &self.encoding).map_err(|e| AuthError::Key {
            path: PathBuf::new(),
            message: format!("signing: {e}"),
        })
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Issues the built-in token service's tokens.
#[derive(Debug)]
pub struct Issuer {
    pub key: SigningKey,
    pub issuer: String,
    pub service: String,
    pub expires_in: u64,
    pub refresh_expires_in: u64,
}

impl Issuer {
    pub fn access_token(
        &self,
        subject: Option<&str>,
        granted: &[Access],
        now: u64,
    ) -> Result<String, AuthError> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: subject.unwrap_or_default().to_string(),
            aud: Audience::One(self.service.clone()),
            exp: now + self.expires_in,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: random_hex(16),
            access: granted.iter().map(ClaimAccess::from_access).collect(),
        };
        self.key.sign(&claims)
    }

    /// A refresh token (docker's `identitytoken`) for `subject`, bound to its credential
    /// fingerprint.
    pub fn refresh_token(
        &self,
        subject: &str,
        fingerprint: &str,
        now: u64,
    ) -> Result<String, AuthError> {
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.service),
            exp: now + self.refresh_expires_in,
            iat: now,
            jti: random_hex(16),
            fpr: fingerprint.to_string(),
        };
        self.key.sign(&claims)
    }

    /// The subject and fingerprint of a valid refresh token of ours.
    pub fn check_refresh_token(&self, token: &str) -> Result<(String, String), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.kid.as_deref() != Some(self.key.kid()) {
            return Err(TokenError::UnknownKey);
        }
        let trusted = self.key.verifying_key();
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = LEEWAY_SECONDS;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[format!("{}{REFRESH_AUDIENCE_SUFFIX}", self.service)]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<RefreshClaims>(token, &trusted.key, &v)
            .map_err(TokenError::from_jwt)?;
        Ok((data.claims.sub, data.claims.fpr))
    }
}

/// Why a bearer token was refused. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("invalid: {0}")]
    Invalid(String),
}

impl TokenError {
    fn from_jwt(e: jsonwebtoken::errors::Error) -> TokenError {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => TokenError::BadSignature,
            K::ExpiredSignature => TokenError::Expired,
            K::ImmatureSignature => TokenError::NotYetValid,
            K::InvalidAudience => TokenError::WrongAudience,
            K::InvalidIssuer => TokenError::WrongIssuer,
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => TokenError::Malformed,
            K::MissingRequiredClaim(c) => TokenError::Invalid(format!("missing claim {c}")),
            K::InvalidAlgorithm => TokenError::Invalid("algorithm not allowed for this key".into()),
            other => TokenError::Invalid(format!("{other:?}")),
        }
    }
}

/// What an RSA key may sign tokens with (PKCS#1 v1.5 and PSS).
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A public key trusted to sign tokens.
#[derive(Clone)]
pub struct TrustedKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    /// The certificate it came from, to match an `x5c` header.
    cert_der: Option<Vec<u8>>,
}

/// Tokens of one issuer: its keys by `kid`, its name and the audience it must address.
pub struct TrustDomain {
    pub issuer: String,
    pub audience: String,
    keys: HashMap<String, TrustedKey>,
    /// The bundle's certificates (DER), as roots for `x5c` chains.
    anchors: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl std::fmt::Debug for TrustDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("TrustDomain")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kids", &kids)
            .finish()
    }
}

impl TrustDomain {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> TrustDomain {
        TrustDomain {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: HashMap::new(),
            anchors: Vec::new(),
        }
    }

    pub fn add_key(&mut self, kid: String, key: TrustedKey) {
        self.keys.insert(kid, key);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every certificate of a PEM bundle (Docker registry's `rootcertbundle`), keyed by the
    /// libtrust id of its public key.
    pub fn add_cert_bundle(&mut self, path: &Path) -> Result<usize, AuthError> {
        let trust_err = |message: String| AuthError::Trust {
            path: path.to_path_buf(),
            message,
        };
        let data = std::fs::read(path).map_err(AuthError::io(path))?;
        let mut added = 0;
        for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
            let pem = pem.map_err(|e| trust_err(format!("bad PEM: {e}")))?;
            if pem.label != "CERTIFICATE" {
                continue;
            }
            let cert = pem
                .parse_x509()
                .map_err(|e| trust_err(format!("bad certificate: {e}")))?;
            let key = trusted_key_of(&cert, &pem.contents).map_err(trust_err)?;
            self.keys
                .insert(libtrust_key_id(cert.public_key().raw), key);
            self.anchors
                .push(rustls_pki_types::CertificateDer::from(pem.contents.clone()));
            added += 1;
        }
        if added == 0 {
            return Err(trust_err("no certificate in the file".into()));
        }
        Ok(added)
    }

    /// Every public key of a JWKS file, keyed by its `kid`.
    pub fn add_jwks(&mut self, path: &Path) -> Result<usize, AuthError> {
        use jsonwebtoken::jwk::AlgorithmParameters as P;
        let trust_err = |message: String| AuthError::Trust {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(AuthError::io(path))?;
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&text).map_err(|e| trust_err(format!("not a JWKS: {e}")))?;
        let mut added = 0;
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| trust_err("a key has no `kid`".into()))?;
            let algorithms = match &jwk.algorithm {
                P::EllipticCurve(p) => match p.curve {
                    jsonwebtoken::jwk::EllipticCurve::P256 => vec![Algorithm::ES256],
                    jsonwebtoken::jwk::EllipticCurve::P384 => vec![Algorithm::ES384],
                    _ => return Err(trust_err(format!("key {kid}: unsupported curve"))),
                },
                P::RSA(_) => RSA_ALGORITHMS.to_vec(),
                P::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                // A shared secret in a public key set would let anyone who reads it sign.
                _ => {
                    return Err(trust_err(format!(
                        "key {kid}: only public keys (EC, RSA, OKP) are accepted"
                    )));
                }
            };
            let key =
                DecodingKey::from_jwk(jwk).map_err(|e| trust_err(format!("key {kid}: {e}")))?;
            self.keys.insert(
                kid,
                TrustedKey {
                    key,
                    algorithms,
                    cert_der: None,
                },
            );
            added += 1;
        }
        if added == 0 {
            return Err(trust_err("no key in the set".into()));
        }
        Ok(added)
    }

    /// The key that signed a token with this header: by `kid`, or by an `x5c` chain whose leaf
    /// is a trusted certificate itself or chains up to one (through the intermediates it
    /// carries), as Docker's registry verifies `x5c` against its `rootcertbundle`.
    fn find(&self, header: &Header) -> Option<Cow<'_, TrustedKey>> {
        if let Some(kid) = &header.kid {
            return self.keys.get(kid).map(Cow::Borrowed);
        }
        let chain = header.x5c_der().ok().flatten()?;
        let (leaf, intermediates) = chain.split_first()?;
        if let Some(key) = self
            .keys
            .values()
            .find(|k| k.cert_der.as_deref() == Some(leaf.as_slice()))
        {
            return Some(Cow::Borrowed(key));
        }
        self.verify_chain(leaf, intermediates).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
        trusted_key_of(&cert, leaf).ok().map(Cow::Owned)
    }

    fn verify_chain(&self, leaf: &[u8], intermediates: &[Vec<u8>]) -> Result<(), webpki::Error> {
        let anchors = self
            .anchors
            .iter()
            .map(webpki::anchor_from_trusted_cert)
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = rustls_pki_types::CertificateDer::from(leaf);
        let leaf = webpki::EndEntityCert::try_from(&leaf)?;
        let intermediates: Vec<_> = intermediates
            .iter()
            .map(|der| rustls_pki_types::CertificateDer::from(der.as_slice()))
            .collect();
        let now = rustls_pki_types::UnixTime::now();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            now,
            AnyKeyUsage,
            None,
            None,
        )?;
        Ok(())
    }
}

/// Token signing certificates carry no particular extended key usage: any is accepted, as Go's
/// `x509.ExtKeyUsageAny` does in Docker's registry.
struct AnyKeyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyKeyUsage {
    fn validate(&self, _: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

/// The token-verification key of a certificate, with the algorithms its key type allows.
fn trusted_key_of(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    der: &[u8],
) -> Result<TrustedKey, String> {
    let spki = cert.public_key();
    let bits = &spki.subject_public_key.data;
    let (key, algorithms) = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(point)) => {
            let algs = match point.key_size() {
                256 => vec![Algorithm::ES256],
                384 => vec![Algorithm::ES384],
                n => return Err(format!("unsupported EC key size {n}")),
            };
            (DecodingKey::from_ec_der(bits), algs)
        }
        Ok(x509_parser::public_key::PublicKey::RSA(_)) => {
            (DecodingKey::from_rsa_der(bits), RSA_ALGORITHMS.to_vec())
        }
        _ => return Err("only EC and RSA certificate keys are supported".into()),
    };
    Ok(TrustedKey {
        key,
        algorithms,
        cert_der: Some(der.to_vec()),
    })
}

/// Verifies access tokens against every trusted issuer.
#[derive(Debug, Default)]
pub struct Verifier {
    domains: Vec<TrustDomain>,
}

impl Verifier {
    pub fn new(domains: Vec<TrustDomain>) -> Verifier {
        Verifier { domains }
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let (domain, key) = self
            .domains
            .iter()
            .find_map(|d| d.find(&header).map(|k| (d, k)))
            .ok_or(TokenError::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(TokenError::Invalid(
                "algorithm not allowed for this key".to_string(),
            ));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = key.algorithms.clone();
        v.leeway = LEEWAY_SECONDS;
        v.validate_nbf = true;
        v.set_issuer(&[&domain.issuer]);
        v.set_audience(&[&domain.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<AccessClaims>(token, &key.key, &v)
            .map(|d| d.claims)
            .map_err(TokenError::from_jwt)
    }
}

/// The `ResourceKind` a claim names, if wharf knows it.
pub fn claim_kind(kind: &str) -> Option<ResourceKind> {
    match kind {
        "repository" => Some(ResourceKind::Repository),
        "registry" => Some(ResourceKind::Registry),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(key: SigningKey) -> Issuer {
        Issuer {
            key,
            issuer: "wharf-registry".into(),
            service: "svc".into(),
            expires_in: 300,
            refresh_expires_in: 3600,
        }
    }

    fn own_verifier(i: &Issuer) -> Verifier {
        let mut d = TrustDomain::new(&i.issuer, &i.service);
        d.add_key(i.key.kid().to_string(), i.key.verifying_key());
        Verifier::new(vec![d])
    }

    fn pull(name: &str) -> Access {
        Access {
            kind: ResourceKind::Repository,
            name: name.into(),
            actions: vec![Action::Pull],
        }
    }

    #[test]
    fn kid_has_libtrust_shape() {
        let kid = libtrust_key_id(b"anything");
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 4));
        // Python: base64.b32encode(sha256(b"abc").digest()[:30]), grouped by 4.
        assert_eq!(
            libtrust_key_id(b"abc"),
            "XJ4B:NP4P:AHH6:UQKB:IDPF:3LRC:EOYA:GYND:SYLX:VHFU:CD7W:D4QA"
        );
    }

    #[test]
    fn round_trip() {
        let i = issuer(SigningKey::generate().unwrap());
        let granted = vec![Access {
            kind: ResourceKind::Repository,
            name: "team/app".into(),
            actions: vec![Action::Pull, Action::Push],
        }];
        let t = i.access_token(Some("alice"), &granted, unix_now()).unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(i.key.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let claims = own_verifier(&i).verify(&t).unwrap();
        assert_eq!(claims.subject(), Some("alice"));
        assert!(claims.covers(&[pull("team/app")]));
        assert!(!claims.covers(&[pull("team/other")]));
        let delete = Access {
            kind: ResourceKind::Repository,
            name: "team/app".into(),
            actions: vec![Action::Delete],
        };
        assert!(!claims.covers(&[delete]));
        let anon = i.access_token(None, &[], unix_now()).unwrap();
        assert_eq!(own_verifier(&i).verify(&anon).unwrap().subject(), None);
    }

    #[test]
    fn rejects_wrong_kid_audience_issuer_and_expiry() {
        let i = issuer(SigningKey::generate().unwrap());
        let v = own_verifier(&i);
        let now = unix_now();

        let other = issuer(SigningKey::generate().unwrap());
        let t = other.access_token(Some("a"), &[], now).unwrap();
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::UnknownKey);

        let wrong_aud = Issuer {
            service: "other-service".into(),
            ..issuer(SigningKey::load_or_create_test_copy(&i.key))
        };
        let t = wrong_aud.access_token(Some("a"), &[], now).unwrap();
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::WrongAudience);

        let wrong_iss = Issuer {
            issuer: "someone-else".into(),
            ..issuer(SigningKey::load_or_create_test_copy(&i.key))
        };
        let t = wrong_iss.access_token(Some("a"), &[], now).unwrap();
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::WrongIssuer);

        let t = i
            .access_token(Some("a"), &[], now - 300 - LEEWAY_SECONDS - 5)
            .unwrap();
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::Expired);

        let t = i.access_token(Some("a"), &[], now + 3600).unwrap();
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::NotYetValid);

        let t = i.access_token(Some("a"), &[], now).unwrap();
        let mut tampered = t.clone();
        tampered.pop();
        tampered.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(v.verify(&tampered).is_err());
        assert_eq!(v.verify("not.a.jwt").unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn refresh_tokens_are_not_access_tokens() {
        let i = issuer(SigningKey::generate().unwrap());
        let r = i.refresh_token("alice", "fp1", unix_now()).unwrap();
        assert_eq!(
            i.check_refresh_token(&r).unwrap(),
            ("alice".to_string(), "fp1".to_string())
        );
        assert_eq!(
            own_verifier(&i).verify(&r).unwrap_err(),
            TokenError::WrongAudience
        );
        let a = i.access_token(Some("alice"), &[], unix_now()).unwrap();
        assert!(i.check_refresh_token(&a).is_err());
    }

    #[test]
    fn key_is_created_once_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth/key.pem");
        let k1 = SigningKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let k2 = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(k1.kid(), k2.kid());
        assert_eq!(k1.derived_secret(), k2.derived_secret());
        // A token of the first instance verifies with the reloaded one.
        let i1 = issuer(k1);
        let t = i1.access_token(Some("a"), &[], unix_now()).unwrap();
        assert!(own_verifier(&issuer(k2)).verify(&t).is_ok());
        std::fs::write(&path, "garbage").unwrap();
        assert!(SigningKey::load_or_create(&path).is_err());
    }

    #[test]
    fn external_tokens_via_cert_bundle_and_jwks() {
        let dir = tempfile::tempdir().unwrap();
        // An "external" token server's key and self-signed certificate.
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, cert.pem()).unwrap();
        let ext = Issuer {
            key: SigningKey::from_key_pair(&pair),
            issuer: "auth.example.com".into(),
            service: "svc".into(),
            expires_in: 300,
            refresh_expires_in: 0,
        };
        let t = ext
            .access_token(Some("bob"), &[pull("a")], unix_now())
            .unwrap();

        let mut d = TrustDomain::new("auth.example.com", "svc");
        assert_eq!(d.add_cert_bundle(&bundle).unwrap(), 1);
        let v = Verifier::new(vec![d]);
        assert_eq!(v.verify(&t).unwrap().subject(), Some("bob"));

        // The same key as a JWKS.
        let point = pair.public_key_raw();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": ext.key.kid(), "use": "sig",
            "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
        }]});
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).unwrap();
        let mut d = TrustDomain::new("auth.example.com", "svc");
        assert_eq!(d.add_jwks(&jwks_path).unwrap(), 1);
        let v = Verifier::new(vec![d]);
        assert!(v.verify(&t).is_ok());

        // Right key, wrong issuer for this domain.
        let mut d = TrustDomain::new("other-issuer", "svc");
        d.add_jwks(&jwks_path).unwrap();
        assert_eq!(
            Verifier::new(vec![d]).verify(&t).unwrap_err(),
            TokenError::WrongIssuer
        );

        // A shared secret in a JWKS is refused.
        std::fs::write(
            &jwks_path,
            r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#,
        )
        .unwrap();
        assert!(TrustDomain::new("x", "svc").add_jwks(&jwks_path).is_err());
        std::fs::write(&bundle, "nothing here").unwrap();
        assert!(
            TrustDomain::new("x", "svc")
                .add_cert_bundle(&bundle)
                .is_err()
        );
    }

    /// A certificate for `pair`, signed by `issuer` (CA when `ca`).
    fn issued_cert(
        pair: &rcgen::KeyPair,
        ca: bool,
        issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    ) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params.signed_by(pair, issuer).unwrap()
    }

    /// A token signed by `leaf_pair` whose header carries `chain` as `x5c` and no `kid`, the way
    /// Docker's token library (and `docker/distribution`'s tests) sign with a certificate chain.
    fn x5c_token(leaf_pair: &rcgen::KeyPair, chain: &[&rcgen::Certificate]) -> String {
        use base64::Engine as _;
        let mut header = Header::new(Algorithm::ES256);
        header.x5c = Some(
            chain
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c.der()))
                .collect(),
        );
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": "auth.example.com", "sub": "carol", "aud": "svc",
            "exp": now + 300, "nbf": now - 1, "iat": now, "jti": "x",
            "access": [{"type": "repository", "name": "a", "actions": ["pull"]}],
        });
        let key = EncodingKey::from_ec_der(&leaf_pair.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    #[test]
    fn x5c_chains_are_verified_up_to_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let root_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "token root");
        let root_cert = root_params.clone().self_signed(&root_pair).unwrap();
        let root = rcgen::Issuer::new(root_params, root_pair);

        let mid_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut mid_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        mid_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        mid_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "token intermediate");
        let mid_cert = mid_params.clone().signed_by(&mid_pair, &root).unwrap();
        let mid = rcgen::Issuer::new(mid_params, mid_pair);

        let leaf_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf_cert = issued_cert(&leaf_pair, false, &mid);

        let bundle = dir.path().join("root.pem");
        std::fs::write(&bundle, root_cert.pem()).unwrap();
        let verifier = || {
            let mut d = TrustDomain::new("auth.example.com", "svc");
            d.add_cert_bundle(&bundle).unwrap();
            Verifier::new(vec![d])
        };

        // leaf + intermediate, rooted in the bundle: accepted, with the leaf's key.
        let good = x5c_token(&leaf_pair, &[&leaf_cert, &mid_cert]);
        assert_eq!(verifier().verify(&good).unwrap().subject(), Some("carol"));

        // Without the intermediate the chain does not reach the root.
        let broken = x5c_token(&leaf_pair, &[&leaf_cert]);
        assert_eq!(
            verifier().verify(&broken).unwrap_err(),
            TokenError::UnknownKey
        );

        // A chain to another root is refused, even with a valid signature.
        let other_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other_root = rcgen::Issuer::new(other_params, other_pair);
        let rogue_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let rogue_cert = issued_cert(&rogue_pair, false, &other_root);
        let rogue = x5c_token(&rogue_pair, &[&rogue_cert]);
        assert_eq!(
            verifier().verify(&rogue).unwrap_err(),
            TokenError::UnknownKey
        );

        // A good chain whose token was signed by another key fails the signature check.
        let forged = x5c_token(&rogue_pair, &[&leaf_cert, &mid_cert]);
        assert_eq!(
            verifier().verify(&forged).unwrap_err(),
            TokenError::BadSignature
        );
    }

    impl SigningKey {
        /// The same key again (tests build issuers that differ only in claims).
        fn load_or_create_test_copy(k: &SigningKey) -> SigningKey {
            SigningKey {
                encoding: k.encoding.clone(),
                kid: k.kid.clone(),
                public_point: k.public_point.clone(),
                spki_der: k.spki_der.clone(),
                derived_secret: k.derived_secret,
            }
        }
    }
}
