// SPDX-License-Identifier: GPL-2.0

//! Attestation: the challenge the VMM gives the guest, the CCA attestation
//! token the guest hands back over the console, and the verdict.
//!
//! The guest's init reads the challenge from the kernel command line
//! (`realm_vmm.challenge=` followed by 128 hex digits), asks configfs-tsm
//! for a report with it, and prints the token as `guest: token HEX` lines
//! ended by `guest: token end` (`scripts/guest/realm-guest-init`). The VMM
//! decodes it (`ciborium`, `coset`), checks the realm token's signature
//! with the key the token carries (`p384`), and compares its challenge and
//! RIM with the challenge it made and the RIM it recomputed ([`crate::rim`]).
//!
//! TF-RMM main's token is a CBOR tag-907 collection: key 44234 the
//! platform token, key 44241 the realm token, each `[263, bstr]` holding a
//! tagged COSE_Sign1 (docs/dev/issue21-rim-token.md §2). The realm token's
//! claims: 10 the challenge, 44236 the measurement algorithm, 44237 the
//! realm attestation key (a COSE_Key, EC2 P-384), 44238 the RIM, 265 the
//! profile. The platform token on QEMU is TF-A's fixed sample: it is
//! decoded, not trusted.

use std::fmt;
use std::io::{
    self,
    Read,
    Write, //
};

use ciborium::Value;
use coset::{
    CborSerializable,
    CoseKey,
    CoseSign1,
    KeyType,
    Label,
    TaggedCborSerializable, //
};
use p384::ecdsa::{
    signature::Verifier,
    Signature,
    VerifyingKey, //
};

use crate::rim::{
    hex,
    HashAlgorithm, //
};

/// The challenge's size: what RSI_ATTESTATION_TOKEN_INIT takes.
pub const CHALLENGE_LEN: usize = 64;

/// The command-line parameter that carries the challenge to the guest.
pub const CHALLENGE_PARAM: &str = "realm_vmm.challenge";

/// The start of a console line that carries part of the token, in hex.
const TOKEN_LINE: &str = "guest: token ";
/// The console line that ends the token.
const TOKEN_END: &str = "guest: token end";
/// The longest console line looked at.
const LINE_MAX: usize = 4096;
/// The most console bytes a token may take (configfs-tsm's 32 KiB
/// `TSM_OUTBLOB_MAX`, in hex).
const TOKEN_HEX_MAX: usize = 2 * 32 * 1024;

/// The CMW collection tag of the CCA token, and the legacy (RMM 1.0) tag.
const TAG_CCA_COLLECTION: u64 = 907;
/// See [`TAG_CCA_COLLECTION`].
const TAG_CCA_LEGACY: u64 = 399;
/// Collection keys: the platform token and the realm token.
const KEY_PLATFORM_TOKEN: i128 = 44234;
/// See [`KEY_PLATFORM_TOKEN`].
const KEY_REALM_TOKEN: i128 = 44241;
/// The CoAP content format of an EAT CWT, in a collection entry.
const CONTENT_FORMAT_EAT_CWT: i128 = 263;

/// Realm claims.
const CLAIM_CHALLENGE: i128 = 10;
/// See [`CLAIM_CHALLENGE`].
const CLAIM_PROFILE: i128 = 265;
/// See [`CLAIM_CHALLENGE`].
const CLAIM_HASH_ALGORITHM: i128 = 44236;
/// See [`CLAIM_CHALLENGE`].
const CLAIM_RAK: i128 = 44237;
/// See [`CLAIM_CHALLENGE`].
const CLAIM_RIM: i128 = 44238;

/// COSE_Key parameters of an EC2 key (RFC 9053): curve, x, y; P-384.
const COSE_EC2_CRV: i64 = -1;
/// See [`COSE_EC2_CRV`].
const COSE_EC2_X: i64 = -2;
/// See [`COSE_EC2_CRV`].
const COSE_EC2_Y: i64 = -3;
/// See [`COSE_EC2_CRV`].
const COSE_CRV_P384: i128 = 2;
/// The size of a P-384 coordinate.
const P384_COORD: usize = 48;

/// A challenge for the guest's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge(pub [u8; CHALLENGE_LEN]);

impl Challenge {
    /// A fresh challenge from `/dev/urandom`.
    pub fn fresh() -> io::Result<Self> {
        let mut c = [0u8; CHALLENGE_LEN];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut c)?;
        Ok(Self(c))
    }

    /// The kernel command-line parameter that hands it to the guest.
    pub fn cmdline_param(&self) -> String {
        format!("{CHALLENGE_PARAM}={}", hex(&self.0))
    }
}

/// Decodes an even number of hex digits.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2)
        .map(|p| u8::try_from(digit(p[0])? * 16 + digit(p[1])?).ok())
        .collect()
}

/// What the console has shown of the token so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum TokenLines {
    /// No token line yet.
    #[default]
    None,
    /// Lines came, no end line yet.
    Partial(String),
    /// The whole token, in hex.
    Complete(String),
    /// A token line that is not hex, or a token too long.
    Bad(String),
}

/// The guest's console output, passed on to `W` and watched for the token.
pub struct ConsoleTap<W: Write> {
    out: W,
    line: Vec<u8>,
    token: TokenLines,
}

impl<W: Write> ConsoleTap<W> {
    /// A tap passing output on to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::new(),
            token: TokenLines::None,
        }
    }

    /// Takes one complete console line.
    fn take_line(&mut self) {
        let line = String::from_utf8_lossy(&self.line);
        let line = line.trim_end_matches('\r');
        if self.line.len() > LINE_MAX {
            // Longer than any token line: not one.
        } else if matches!(self.token, TokenLines::Complete(_) | TokenLines::Bad(_)) {
            // Only the first token counts.
        } else if line == TOKEN_END {
            if let TokenLines::Partial(h) = std::mem::take(&mut self.token) {
                self.token = TokenLines::Complete(h);
            }
        } else if let Some(part) = line.strip_prefix(TOKEN_LINE) {
            let mut h = match std::mem::take(&mut self.token) {
                TokenLines::Partial(h) => h,
                _ => String::new(),
            };
            let part = part.trim();
            self.token = if !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                TokenLines::Bad(format!("a token line is not hex: {part:?}"))
            } else if h.len() + part.len() > TOKEN_HEX_MAX {
                TokenLines::Bad("the token is longer than 32 KiB".into())
            } else {
                h.push_str(part);
                TokenLines::Partial(h)
            };
        }
        self.line.clear();
    }

    /// The token, once its end line came.
    pub fn token(&self) -> Result<Vec<u8>, TokenError> {
        match &self.token {
            TokenLines::None => Err(TokenError("the guest sent no token".into())),
            TokenLines::Partial(_) => Err(TokenError("the token's end line never came".into())),
            TokenLines::Bad(why) => Err(TokenError(why.clone())),
            TokenLines::Complete(h) => {
                unhex(h).ok_or_else(|| TokenError("odd number of hex digits".into()))
            }
        }
    }
}

impl<W: Write> Write for ConsoleTap<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.take_line();
            } else if self.line.len() <= LINE_MAX {
                self.line.push(b);
            }
        }
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Why a token cannot be read or checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenError(pub String);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenError {}

/// A [`TokenError`] from words.
fn bad<T>(why: impl Into<String>) -> Result<T, TokenError> {
    Err(TokenError(why.into()))
}

/// What the realm token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealmClaims {
    /// The challenge.
    pub challenge: Vec<u8>,
    /// The Realm Initial Measurement.
    pub rim: Vec<u8>,
    /// Its algorithm.
    pub hash_algorithm: HashAlgorithm,
    /// The profile, if given.
    pub profile: Option<String>,
    /// The realm attestation key: an uncompressed P-384 point (SEC1).
    pub rak: Vec<u8>,
}

/// A decoded CCA attestation token.
#[derive(Clone, Debug)]
pub struct Token {
    /// The realm token's claims.
    pub realm: RealmClaims,
    /// The realm token's COSE_Sign1, for its signature.
    realm_sign1: CoseSign1,
    /// The platform token's size (not checked: QEMU's is a sample).
    pub platform_len: usize,
}

/// The integer key `k` of map `m`.
fn map_get(m: &[(Value, Value)], k: i128) -> Option<&Value> {
    m.iter()
        .find(|(key, _)| key.as_integer().is_some_and(|i| i128::from(i) == k))
        .map(|(_, v)| v)
}

/// A collection entry: `[263, bstr]`, or a bare bstr (legacy).
fn entry_bytes(v: &Value) -> Result<&[u8], TokenError> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Array(a) => match a.as_slice() {
            [Value::Integer(cf), Value::Bytes(b)] if i128::from(*cf) == CONTENT_FORMAT_EAT_CWT => {
                Ok(b)
            }
            _ => bad("a collection entry is not [263, bstr]"),
        },
        _ => bad("a collection entry is neither an array nor a bstr"),
    }
}

/// The bstr claim `k` of `claims`.
fn claim_bytes(claims: &[(Value, Value)], k: i128, name: &str) -> Result<Vec<u8>, TokenError> {
    match map_get(claims, k) {
        Some(Value::Bytes(b)) => Ok(b.clone()),
        Some(_) => bad(format!("the {name} claim ({k}) is not a bstr")),
        None => bad(format!("no {name} claim ({k})")),
    }
}

/// The uncompressed point of a COSE_Key holding an EC2 P-384 key.
fn rak_point(cose_key: &[u8]) -> Result<Vec<u8>, TokenError> {
    let key = CoseKey::from_slice(cose_key).or_else(|e| bad(format!("RAK: {e:?}")))?;
    if key.kty != KeyType::Assigned(coset::iana::KeyType::EC2) {
        return bad("RAK: not an EC2 key");
    }
    let param = |l: i64| {
        key.params
            .iter()
            .find(|(label, _)| *label == Label::Int(l))
            .map(|(_, v)| v)
    };
    match param(COSE_EC2_CRV) {
        Some(Value::Integer(c)) if i128::from(*c) == COSE_CRV_P384 => {}
        _ => return bad("RAK: not on P-384"),
    }
    let mut point = vec![0x04];
    for (l, name) in [(COSE_EC2_X, "x"), (COSE_EC2_Y, "y")] {
        match param(l) {
            Some(Value::Bytes(b)) if b.len() == P384_COORD => point.extend_from_slice(b),
            _ => return bad(format!("RAK: no 48-byte {name}")),
        }
    }
    Ok(point)
}

impl Token {
    /// Decodes `bytes`, a CCA token as the RMM produced it (signatures are
    /// checked by [`Token::verify_realm_signature`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        let top: Value = ciborium::from_reader(bytes).or_else(|e| bad(format!("not CBOR: {e}")))?;
        let collection = match top {
            Value::Tag(TAG_CCA_COLLECTION | TAG_CCA_LEGACY, inner) => match *inner {
                Value::Map(m) => m,
                _ => return bad("the collection is not a map"),
            },
            Value::Tag(t, _) => return bad(format!("CBOR tag {t}, not a CCA token (907)")),
            _ => return bad("not a tagged CCA token"),
        };
        let realm = map_get(&collection, KEY_REALM_TOKEN)
            .ok_or_else(|| TokenError("no realm token (44241)".into()))?;
        let platform_len = map_get(&collection, KEY_PLATFORM_TOKEN)
            .map(entry_bytes)
            .transpose()?
            .map_or(0, <[u8]>::len);
        let realm = entry_bytes(realm)?;
        let sign1 = CoseSign1::from_tagged_slice(realm)
            .or_else(|_| CoseSign1::from_slice(realm))
            .or_else(|e| bad(format!("the realm token is not a COSE_Sign1: {e:?}")))?;
        let payload = sign1
            .payload
            .as_deref()
            .ok_or_else(|| TokenError("the realm token has no payload".into()))?;
        let claims: Value = ciborium::from_reader(payload)
            .or_else(|e| bad(format!("realm claims are not CBOR: {e}")))?;
        let Value::Map(claims) = claims else {
            return bad("realm claims are not a map");
        };
        let hash_algorithm = match map_get(&claims, CLAIM_HASH_ALGORITHM) {
            Some(Value::Text(t)) => HashAlgorithm::from_name(t)
                .ok_or_else(|| TokenError(format!("unknown measurement algorithm {t:?}")))?,
            _ => return bad("no measurement algorithm claim (44236)"),
        };
        let profile = match map_get(&claims, CLAIM_PROFILE) {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        let realm = RealmClaims {
            challenge: claim_bytes(&claims, CLAIM_CHALLENGE, "challenge")?,
            rim: claim_bytes(&claims, CLAIM_RIM, "RIM")?,
            hash_algorithm,
            profile,
            rak: rak_point(&claim_bytes(&claims, CLAIM_RAK, "realm public key")?)?,
        };
        Ok(Self {
            realm,
            realm_sign1: sign1,
            platform_len,
        })
    }

    /// Checks the realm token's ES384 signature with the key it carries:
    /// the token is whole and was signed by whoever holds that key (that
    /// the platform vouches for the key is the platform token's business).
    pub fn verify_realm_signature(&self) -> Result<(), TokenError> {
        let alg = self.realm_sign1.protected.header.alg.as_ref();
        if alg != Some(&coset::Algorithm::Assigned(coset::iana::Algorithm::ES384)) {
            return bad(format!("the realm token is signed with {alg:?}, not ES384"));
        }
        let key = VerifyingKey::from_sec1_bytes(&self.realm.rak)
            .or_else(|_| bad("the realm public key is not a P-384 point"))?;
        self.realm_sign1.verify_signature(b"", |sig, data| {
            let sig =
                Signature::from_slice(sig).or_else(|_| bad("the signature is not 96 bytes"))?;
            key.verify(data, &sig)
                .or_else(|_| bad("the realm token's signature does not verify"))
        })
    }
}

/// What the VMM concludes from a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// One line per check, as printed.
    pub lines: Vec<String>,
    /// Whether every check passed.
    pub ok: bool,
}

/// Checks `token` against the `challenge` the VMM made and the RIM it
/// expects under each algorithm the realm may use (`expected`).
pub fn check(
    token: &[u8],
    challenge: &Challenge,
    expected: &[(HashAlgorithm, Vec<u8>)],
) -> Verdict {
    let mut lines = Vec::new();
    let mut ok = true;
    let token = match Token::decode(token) {
        Ok(t) => t,
        Err(e) => {
            return Verdict {
                lines: vec![format!("token: {e}")],
                ok: false,
            }
        }
    };
    let r = &token.realm;
    lines.push(format!(
        "token: realm token with profile {}, platform token {} bytes (not checked)",
        r.profile.as_deref().unwrap_or("(none)"),
        token.platform_len
    ));
    match token.verify_realm_signature() {
        Ok(()) => lines.push("signature: ES384 by the realm attestation key: ok".into()),
        Err(e) => {
            ok = false;
            lines.push(format!("signature: {e}"));
        }
    }
    if r.challenge == challenge.0 {
        lines.push("challenge: matches".into());
    } else {
        ok = false;
        lines.push(format!("challenge: MISMATCH: token {}", hex(&r.challenge)));
    }
    let name = r.hash_algorithm.name();
    match expected.iter().find(|(a, _)| *a == r.hash_algorithm) {
        Some((_, rim)) if *rim == r.rim => {
            lines.push(format!("RIM: {name} {} matches", hex(&r.rim)));
        }
        Some((_, rim)) => {
            ok = false;
            lines.push(format!(
                "RIM: MISMATCH: token {name} {}, expected {}",
                hex(&r.rim),
                hex(rim)
            ));
        }
        None => {
            ok = false;
            lines.push(format!(
                "RIM: the realm measures with {name}, which the host never asks for"
            ));
        }
    }
    Verdict { lines, ok }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        assert_eq!(unhex("00ff7a"), Some(vec![0, 0xff, 0x7a]));
        assert_eq!(unhex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let c = Challenge([0x5a; CHALLENGE_LEN]);
        let p = c.cmdline_param();
        assert_eq!(p.len(), CHALLENGE_PARAM.len() + 1 + 2 * CHALLENGE_LEN);
        assert_eq!(unhex(&p[CHALLENGE_PARAM.len() + 1..]), Some(c.0.to_vec()));
        assert_ne!(Challenge::fresh().expect("urandom").0, [0u8; CHALLENGE_LEN]);
    }

    #[test]
    fn the_tap_passes_everything_on_and_collects_the_token() {
        let mut out = Vec::new();
        let mut tap = ConsoleTap::new(&mut out);
        assert!(tap.token().is_err());
        // Split across writes, with the tty's CR LF.
        tap.write_all(b"boot\r\nguest: token d28").expect("write");
        tap.write_all(b"4\r\nguest: token 40\r\n").expect("write");
        assert_eq!(
            tap.token(),
            Err(TokenError("the token's end line never came".into()))
        );
        tap.write_all(b"guest: token a0\r\nguest: token end\r\nguest: token ff\r\n")
            .expect("write");
        assert_eq!(tap.token(), Ok(vec![0xd2, 0x84, 0x40, 0xa0]));
        drop(tap);
        assert!(out.starts_with(b"boot\r\nguest: token d284"));
        assert!(out.ends_with(b"guest: token ff\r\n"));

        let mut tap = ConsoleTap::new(io::sink());
        tap.write_all(b"guest: token 12xy\nguest: token end\n")
            .expect("write");
        assert!(tap.token().is_err());
        let mut tap = ConsoleTap::new(io::sink());
        tap.write_all(b"guest: token 123\nguest: token end\n")
            .expect("write");
        assert!(tap.token().is_err());
        let mut tap = ConsoleTap::new(io::sink());
        let line = format!("guest: token {}\n", "00".repeat(1000));
        for _ in 0..40 {
            tap.write_all(line.as_bytes()).expect("write");
        }
        tap.write_all(b"guest: token end\n").expect("write");
        assert_eq!(
            tap.token(),
            Err(TokenError("the token is longer than 32 KiB".into()))
        );
    }

    /// A token shaped like TF-RMM main's, its realm token signed by a
    /// fixed key, with `claims` changed by `edit` before signing.
    fn token(challenge: &[u8], rim: &[u8], edit: impl Fn(&mut Vec<(Value, Value)>)) -> Vec<u8> {
        use p384::ecdsa::signature::Signer;
        use p384::ecdsa::SigningKey;

        let int = |i: i64| Value::Integer(i.into());
        let key = SigningKey::from_slice(&[7u8; 48]).expect("a scalar");
        let point = key.verifying_key().to_sec1_point(false);
        let point = point.as_bytes();
        let cose_key = coset::CoseKeyBuilder::new_ec2_pub_key(
            coset::iana::EllipticCurve::P_384,
            point[1..49].to_vec(),
            point[49..97].to_vec(),
        )
        .build()
        .to_vec()
        .expect("COSE_Key");
        let mut claims = vec![
            (int(10), Value::Bytes(challenge.to_vec())),
            (int(256), Value::Bytes([1u8; 33].to_vec())),
            (int(44235), Value::Bytes(vec![0; 64])),
            (int(44237), Value::Bytes(cose_key)),
            (int(44236), Value::Text("sha-256".into())),
            (int(44240), Value::Text("sha-256".into())),
            (int(44243), int(0)),
            (int(265), Value::Text("tag:arm.com,2024:realm#2.0.0".into())),
            (int(44238), Value::Bytes(rim.to_vec())),
            (int(44239), Value::Array(vec![Value::Bytes(vec![0; 32]); 4])),
        ];
        edit(&mut claims);
        let mut payload = Vec::new();
        ciborium::into_writer(&Value::Map(claims), &mut payload).expect("claims");
        let sign1 = coset::CoseSign1Builder::new()
            .protected(
                coset::HeaderBuilder::new()
                    .algorithm(coset::iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload)
            .create_signature(b"", |data| {
                let sig: Signature = key.sign(data);
                sig.to_vec()
            })
            .build();
        let realm = sign1.to_tagged_vec().expect("COSE_Sign1");
        let entry = |b: Vec<u8>| Value::Array(vec![int(263), Value::Bytes(b)]);
        let top = Value::Tag(
            907,
            Box::new(Value::Map(vec![
                (int(44234), entry(vec![0xd2; 100])),
                (int(44241), entry(realm)),
            ])),
        );
        let mut out = Vec::new();
        ciborium::into_writer(&top, &mut out).expect("collection");
        out
    }

    #[test]
    fn a_good_token_passes_and_each_wrong_part_is_named() {
        let c = Challenge([0x11; 64]);
        let rim = vec![0x22u8; 32];
        let expected = [
            (HashAlgorithm::Sha256, rim.clone()),
            (HashAlgorithm::Sha512, vec![0x33; 64]),
        ];
        let good = token(&c.0, &rim, |_| {});
        let t = Token::decode(&good).expect("decodes");
        assert_eq!(t.realm.rim, rim);
        assert_eq!(t.realm.hash_algorithm, HashAlgorithm::Sha256);
        assert_eq!(
            t.realm.profile.as_deref(),
            Some("tag:arm.com,2024:realm#2.0.0")
        );
        assert_eq!(t.platform_len, 100);
        let v = check(&good, &c, &expected);
        assert!(v.ok, "{v:?}");
        assert!(v
            .lines
            .iter()
            .any(|l| l.starts_with("RIM: sha-256 2222") && l.ends_with("matches")));

        // Another challenge, another RIM, another algorithm.
        let v = check(&good, &Challenge([0x12; 64]), &expected);
        assert!(!v.ok && v.lines.iter().any(|l| l.starts_with("challenge: MISMATCH")));
        let v = check(&token(&c.0, &[0x23; 32], |_| {}), &c, &expected);
        assert!(!v.ok && v.lines.iter().any(|l| l.starts_with("RIM: MISMATCH")));
        let sha384 = token(&c.0, &rim, |cl| {
            cl[4].1 = Value::Text("sha-384".into());
        });
        let v = check(&sha384, &c, &expected);
        assert!(!v.ok && v.lines.iter().any(|l| l.contains("never asks for")));

        // One payload byte changed after signing: the signature fails.
        let at = good
            .windows(32)
            .position(|w| w == [0x22; 32])
            .expect("the RIM in the token");
        let mut forged = good.clone();
        forged[at] ^= 1;
        let v = check(&forged, &c, &expected);
        assert!(!v.ok);
        assert!(
            v.lines
                .iter()
                .any(|l| l == "signature: the realm token's signature does not verify"),
            "{v:?}"
        );

        // A claim missing, or of the wrong type.
        let no_rim = token(&c.0, &rim, |cl| {
            cl.retain(|(k, _)| *k != Value::Integer(44238.into()))
        });
        assert_eq!(
            Token::decode(&no_rim).map(|_| ()),
            Err(TokenError("no RIM claim (44238)".into()))
        );
        let text_challenge = token(&c.0, &rim, |cl| cl[0].1 = Value::Text("x".into()));
        assert!(Token::decode(&text_challenge).is_err());
    }

    /// A token TF-RMM main (9a7f8ef4, on TF-A's QEMU platform) gave the
    /// upstream guest in realm_linux, whose RIM realm-vmm matched.
    const TF_RMM_TOKEN: &str = include_str!("../testdata/tf-rmm-token.hex");
    /// Its RIM, as the run printed it.
    const TF_RMM_RIM: &str = "59f9363085475114669d2db775b3f51622b78d8b991b0f6fe8a927f634d312eb";

    #[test]
    fn a_token_from_tf_rmm_decodes_and_verifies() {
        let bytes = unhex(TF_RMM_TOKEN.trim()).expect("hex");
        let t = Token::decode(&bytes).expect("decodes");
        assert_eq!(
            t.realm.profile.as_deref(),
            Some("tag:arm.com,2024:realm#2.0.0")
        );
        assert_eq!(t.realm.hash_algorithm, HashAlgorithm::Sha256);
        assert_eq!(hex(&t.realm.rim), TF_RMM_RIM);
        assert_eq!(t.realm.challenge.len(), CHALLENGE_LEN);
        assert_eq!(t.platform_len, 1518);
        assert_eq!(t.verify_realm_signature(), Ok(()));
        let mut c = [0u8; CHALLENGE_LEN];
        c.copy_from_slice(&t.realm.challenge);
        let rim = unhex(TF_RMM_RIM).expect("hex");
        let v = check(&bytes, &Challenge(c), &[(HashAlgorithm::Sha256, rim)]);
        assert!(v.ok, "{v:?}");
        // Each byte of the signed claims matters: flip one in the RIM.
        let at = bytes
            .windows(32)
            .position(|w| w == t.realm.rim.as_slice())
            .expect("the RIM in the token");
        let mut forged = bytes.clone();
        forged[at + 5] ^= 0x80;
        let f = Token::decode(&forged).expect("still decodes");
        assert!(f.verify_realm_signature().is_err());
    }

    #[test]
    fn mangled_tokens_never_panic() {
        let good = unhex(TF_RMM_TOKEN.trim()).expect("hex");
        let c = Challenge([0; CHALLENGE_LEN]);
        // A fixed xorshift sequence: byte flips, truncations, insertions.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..500 {
            let mut t = good.clone();
            match next() % 3 {
                0 => {
                    for _ in 0..1 + next() % 4 {
                        let i = (next() as usize) % t.len();
                        t[i] ^= 1 << (next() % 8);
                    }
                }
                1 => t.truncate((next() as usize) % t.len()),
                _ => {
                    let i = (next() as usize) % t.len();
                    t.insert(i, next() as u8);
                }
            }
            if let Ok(tok) = Token::decode(&t) {
                let _ = tok.verify_realm_signature();
            }
            let v = check(&t, &c, &[]);
            assert!(!v.ok);
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (bytes, why) in [
            (&b""[..], "not CBOR"),
            (&[0xa0][..], "not a tagged CCA token"),
            // 18([]): a COSE_Sign1 tag, not a collection.
            (&[0xd2, 0x80][..], "CBOR tag 18"),
            // 907({}): no realm token.
            (&[0xd9, 0x03, 0x8b, 0xa0][..], "no realm token"),
        ] {
            let e = Token::decode(bytes).expect_err("refused");
            assert!(e.0.contains(why), "{e} for {bytes:02x?}");
        }
    }
}
