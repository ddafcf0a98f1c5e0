//! A second factor (TOTP, RFC 6238): a signed-in user enrolls an
//! authenticator app (BeginTotpEnrollment, ConfirmTotpEnrollment with a
//! first code) and gets ten single-use recovery codes, shown once. Seeds are
//! sealed (AES-256-GCM) under the server's secret key, bound to their user;
//! recovery codes and login challenges are kept as hashes only.

use std::{fmt, sync::Arc};

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Key, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::{rngs::OsRng, Rng, RngCore};
use serde_json::json;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

use super::{
    call::Call,
    caller::{Caller, Principal},
    user::{ensure_may_act_on, User},
    DomainError, FieldViolation,
};
use crate::store::{self, Transaction};

/// The server's key for sealing second-factor seeds (32 bytes, from
/// configuration). `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey(Key<Aes256Gcm>);

impl SecretKey {
    pub const BYTES: usize = 32;

    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self(bytes.into())
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// A key written as standard base64 of 32 bytes (`openssl rand -base64 32`).
    pub fn parse_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "the secret key must be base64 (openssl rand -base64 32)".to_owned())?;
        let bytes: [u8; Self::BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "the secret key must be {} bytes, not {}",
                Self::BYTES,
                bytes.len()
            )
        })?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_slice())
    }

    /// A random nonce, then the sealed text; the user's ids are its
    /// associated data, so that a sealed seed opens for its user only.
    fn seal(&self, organization_id: Uuid, user_id: Uuid, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(organization_id, user_id);
        let sealed = Aes256Gcm::new(&self.0)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM seals any short message");
        [nonce.as_slice(), &sealed].concat()
    }

    fn open(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
        sealed: &[u8],
    ) -> Result<Vec<u8>, DomainError> {
        let unreadable = || {
            DomainError::Internal(anyhow::anyhow!(
                "a second factor's seed does not open with the server's secret key (was the key changed?)"
            ))
        };
        if sealed.len() < NONCE_BYTES {
            return Err(unreadable());
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let aad = associated_data(organization_id, user_id);
        Aes256Gcm::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| unreadable())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

const NONCE_BYTES: usize = 12;

fn associated_data(organization_id: Uuid, user_id: Uuid) -> Vec<u8> {
    [organization_id.as_bytes().as_slice(), user_id.as_bytes()].concat()
}

/// 160 bits, as RFC 4226 recommends.
const SEED_BYTES: usize = 20;
const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;
const RECOVERY_CODES: usize = 10;
/// 16 base32 characters: 80 random bits, beyond offline guessing, so a
/// (salted) SHA-256 keeps them as well as a slow password hash would.
const RECOVERY_CODE_CHARS: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// A typed code is at most this long (a recovery code with spaces to spare).
const MAX_CODE_BYTES: usize = 64;

/// What an authenticator app needs: the seed in base32 and the URI of its
/// QR code. `Debug` never prints them.
pub struct Enrollment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Enrollment([redacted])")
    }
}

/// A typed code: an authenticator's, or a recovery code (normalized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Totp(String),
    Recovery(String),
}

impl Code {
    /// A code as typed: spaces and dashes do not count, nor case.
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let violation = |code, description: &str| {
            Err(DomainError::InvalidArgument(vec![FieldViolation::new(
                field,
                code,
                description,
            )]))
        };
        if raw.len() > MAX_CODE_BYTES {
            return violation("TOO_LONG", "must be at most 64 bytes");
        }
        let compact: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if compact.is_empty() {
            return violation("REQUIRED", "required");
        }
        if compact.len() == DIGITS && compact.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Code::Totp(compact));
        }
        if compact.len() == RECOVERY_CODE_CHARS && compact.bytes().all(|b| BASE32.contains(&b)) {
            return Ok(Code::Recovery(compact));
        }
        violation(
            "INVALID_CODE",
            "must be the 6-digit code of your authenticator app or one of your recovery codes",
        )
    }
}

fn totp(seed: Vec<u8>, issuer: &str, account: &str) -> Result<TOTP, DomainError> {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECONDS,
        seed,
        Some(issuer.replace(':', " ")),
        account.replace(':', " "),
    )
    .map_err(|error| DomainError::Internal(anyhow::anyhow!("TOTP: {error:?}")))
}

/// The time step of `code` among the current one and its neighbours (a
/// clock a little off, a code typed as it changed), if it is newer than
/// the last one used: a code works once.
fn matching_step(totp: &TOTP, code: &str, now_seconds: u64, last_step: Option<i64>) -> Option<i64> {
    let now_step = (now_seconds / STEP_SECONDS) as i64;
    [now_step - 1, now_step, now_step + 1]
        .into_iter()
        .filter(|step| *step >= 0 && last_step.is_none_or(|last| *step > last))
        .find(|step| totp.check(code, *step as u64 * STEP_SECONDS))
}

fn now_seconds() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// Ten new recovery codes, as shown (`abcd-efgh-ijkl-mnop`).
fn new_recovery_codes() -> Vec<String> {
    let mut rng = OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<char> = (0..RECOVERY_CODE_CHARS)
                .map(|_| BASE32[rng.gen_range(0..BASE32.len())] as char)
                .collect();
            chars
                .chunks(4)
                .map(|group| group.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// What is kept of a recovery code: SHA-256 over its user (a salt) and the code.
fn recovery_code_hash(user_id: Uuid, normalized: &str) -> Vec<u8> {
    let mut digest = Sha256::new();
    digest.update(b"roster recovery code\0");
    digest.update(user_id.as_bytes());
    digest.update(normalized.as_bytes());
    digest.finalize().to_vec()
}

/// The QR code of an otpauth:// URI, as an SVG document.
pub fn qr_svg(uri: &str) -> Result<String, DomainError> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|error| DomainError::Internal(anyhow::anyhow!("QR code: {error}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

/// Enrollment and code checks; without a secret key (a server given a
/// database but no ROSTER_SECRET_KEY) there is no second factor to enroll.
pub struct SecondFactors {
    key: Option<Arc<SecretKey>>,
}

impl SecondFactors {
    pub fn new(key: Option<Arc<SecretKey>>) -> Self {
        Self { key }
    }

    /// Whether the server can seal seeds (it has a secret key): without
    /// one nobody can enroll, so no organization may require it.
    pub fn available(&self) -> bool {
        self.key.is_some()
    }

    fn key(&self) -> Result<&SecretKey, DomainError> {
        self.key.as_deref().ok_or_else(|| DomainError::FailedPrecondition {
            reason: "SECOND_FACTOR_UNAVAILABLE",
            message: "this server has no secret key (ROSTER_SECRET_KEY) to keep second factors with; ask your administrator".into(),
        })
    }

    /// BeginTotpEnrollment: a new seed for the signed-in user, unconfirmed
    /// (a new call replaces it); refused when one is confirmed.
    pub async fn begin_enrollment(&self, call: &Call) -> Result<Enrollment, DomainError> {
        let user_id = signed_in_user(&call.caller)?;
        let organization_id = call.caller.organization_id;
        let organization =
            store::organizations::find(&mut *call.pool().acquire().await?, organization_id)
                .await?
                .ok_or_else(|| DomainError::not_found("organization", organization_id))?;
        let mut work = call.begin().await?;
        let user = store::users::lock(work.tx(), organization_id, user_id)
            .await?
            .ok_or_else(|| DomainError::not_found("user", user_id))?;
        let account = format!("{}/{}", organization.name, user.username);
        let enrollment = self
            .begin_in(work.tx(), organization_id, user_id, &account)
            .await?;
        work.record(work.audit_record("user.second_factor.begin", "user", user_id));
        work.commit().await?;
        Ok(enrollment)
    }

    /// A new unconfirmed seed for a user, named `account` in the app.
    pub(crate) async fn begin_in(
        &self,
        tx: &mut Transaction<'_>,
        organization_id: Uuid,
        user_id: Uuid,
        account: &str,
    ) -> Result<Enrollment, DomainError> {
        let key = self.key()?;
        let mut seed = vec![0u8; SEED_BYTES];
        OsRng.fill_bytes(&mut seed);
        let sealed = key.seal(organization_id, user_id, &seed);
        if !store::second_factors::begin(tx, organization_id, user_id, &sealed).await? {
            return Err(already_enrolled());
        }
        let totp = totp(seed, "Roster", account)?;
        Ok(Enrollment {
            secret_base32: totp.get_secret_base32(),
            otpauth_uri: totp.get_url(),
        })
    }

    /// ConfirmTotpEnrollment: a first code proves the app has the seed; the
    /// factor is on from then, with ten new recovery codes (returned once).
    pub async fn confirm_enrollment(
        &self,
        call: &Call,
        raw_code: &str,
    ) -> Result<Vec<String>, DomainError> {
        let user_id = signed_in_user(&call.caller)?;
        let mut work = call.begin().await?;
        let codes = self
            .confirm_in(work.tx(), call.caller.organization_id, user_id, raw_code)
            .await?;
        work.record(work.audit_record("user.second_factor.enroll", "user", user_id));
        work.commit().await?;
        Ok(codes)
    }

    /// Confirms a user's unconfirmed seed with a code of it: the recovery codes.
    pub(crate) async fn confirm_in(
        &self,
        tx: &mut Transaction<'_>,
        organization_id: Uuid,
        user_id: Uuid,
        raw_code: &str,
    ) -> Result<Vec<String>, DomainError> {
        let key = self.key()?;
        let Code::Totp(code) = Code::parse("code", raw_code)? else {
            return Err(DomainError::invalid(
                "code",
                "INVALID_CODE",
                "must be the 6-digit code your authenticator app shows",
            ));
        };
        let factor = store::second_factors::lock(tx, organization_id, user_id)
            .await?
            .ok_or_else(|| DomainError::FailedPrecondition {
                reason: "NO_ENROLLMENT",
                message: "begin with BeginTotpEnrollment".into(),
            })?;
        if factor.confirm_time.is_some() {
            return Err(already_enrolled());
        }
        let seed = key.open(organization_id, user_id, &factor.sealed_secret)?;
        let step = matching_step(
            &totp(seed, "Roster", "")?,
            &code,
            now_seconds(),
            factor.last_step,
        )
        .ok_or_else(|| {
            DomainError::invalid(
                "code",
                "WRONG_CODE",
                "this is not the code your authenticator app shows now (is its clock right?)",
            )
        })?;
        store::second_factors::use_step(tx, organization_id, user_id, step).await?;
        let codes = new_recovery_codes();
        let hashes: Vec<Vec<u8>> = codes
            .iter()
            .map(|code| recovery_code_hash(user_id, &code.replace('-', "")))
            .collect();
        store::second_factors::replace_recovery_codes(tx, organization_id, user_id, &hashes)
            .await?;
        Ok(codes)
    }

    /// Whether `code` is the user's current TOTP code (not used before) or
    /// one of their unused recovery codes; a match is used up in `tx`.
    pub(crate) async fn use_code(
        &self,
        tx: &mut Transaction<'_>,
        organization_id: Uuid,
        user_id: Uuid,
        code: &Code,
    ) -> Result<bool, DomainError> {
        let key = self.key()?;
        let Some(factor) = store::second_factors::lock(tx, organization_id, user_id).await? else {
            return Ok(false);
        };
        if factor.confirm_time.is_none() {
            return Ok(false);
        }
        match code {
            Code::Totp(code) => {
                let seed = key.open(organization_id, user_id, &factor.sealed_secret)?;
                let totp = totp(seed, "Roster", "")?;
                let Some(step) = matching_step(&totp, code, now_seconds(), factor.last_step) else {
                    return Ok(false);
                };
                store::second_factors::use_step(tx, organization_id, user_id, step).await?;
                Ok(true)
            }
            Code::Recovery(code) => Ok(store::second_factors::use_recovery_code(
                tx,
                organization_id,
                user_id,
                &recovery_code_hash(user_id, code),
            )
            .await?),
        }
    }
}

/// ResetUserSecondFactor: a user who lost their authenticator signs in
/// with their password alone again (and enrolls anew). An administrator's,
/// under the who-may-do-what rule; not on oneself.
pub async fn reset_user_second_factor(call: &Call, user_id: Uuid) -> Result<User, DomainError> {
    let caller = &call.caller;
    let mut work = call.begin().await?;
    ensure_may_act_on(
        work.tx(),
        caller,
        user_id,
        Some("reset the second factor of"),
    )
    .await?;
    let removed = store::second_factors::remove(work.tx(), caller.organization_id, user_id).await?;
    let user = store::users::lock(work.tx(), caller.organization_id, user_id)
        .await?
        .ok_or_else(|| DomainError::not_found("user", user_id))?;
    work.record(
        work.audit_record("user.second_factor.reset", "user", user_id)
            .with_details(json!({ "had_second_factor": removed > 0 })),
    );
    work.commit().await?;
    Ok(user)
}

fn signed_in_user(caller: &Caller) -> Result<Uuid, DomainError> {
    match caller.principal {
        Principal::User { id, .. } => Ok(id),
        _ => Err(DomainError::FailedPrecondition {
            reason: "NOT_A_USER_SESSION",
            message: "a second factor is a signed-in user's; an API key has none".into(),
        }),
    }
}

fn already_enrolled() -> DomainError {
    DomainError::FailedPrecondition {
        reason: "SECOND_FACTOR_ALREADY_ENROLLED",
        message: "you already have a second factor; an administrator can reset it (ResetUserSecondFactor)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_seed_opens_with_its_key_for_its_user_only() {
        let key = SecretKey::generate();
        let (organization, user) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = key.seal(organization, user, b"seed");
        assert!(!sealed.windows(4).any(|window| window == b"seed"));
        assert_eq!(key.open(organization, user, &sealed).unwrap(), b"seed");
        assert!(key.open(organization, Uuid::new_v4(), &sealed).is_err());
        assert!(SecretKey::generate()
            .open(organization, user, &sealed)
            .is_err());
        assert!(key.open(organization, user, &sealed[..5]).is_err());
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_debug_printed() {
        let key = SecretKey::generate();
        let again = SecretKey::parse_base64(&key.to_base64()).unwrap();
        assert_eq!(again.0, key.0);
        assert!(SecretKey::parse_base64("c2hvcnQ=")
            .unwrap_err()
            .contains("32 bytes"));
        assert!(SecretKey::parse_base64("not base64!").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
    }

    #[test]
    fn codes_are_six_digits_or_a_recovery_code_as_typed() {
        assert_eq!(
            Code::parse("code", " 123 456 ").unwrap(),
            Code::Totp("123456".into())
        );
        assert_eq!(
            Code::parse("code", "ABCD-efgh-2345-7zzz").unwrap(),
            Code::Recovery("abcdefgh23457zzz".into())
        );
        for (raw, reason) in [
            ("", "REQUIRED"),
            (" - ", "REQUIRED"),
            ("12345", "INVALID_CODE"),
            ("1234567", "INVALID_CODE"),
            ("abcd-efgh-2345-7zz1", "INVALID_CODE"),
            (&"1".repeat(65), "TOO_LONG"),
        ] {
            let Err(DomainError::InvalidArgument(violations)) = Code::parse("code", raw) else {
                panic!("{raw:?} parsed");
            };
            assert_eq!(violations[0].code, reason, "{raw:?}");
            assert_eq!(violations[0].field, "code");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_neighbours_once() {
        let totp = totp(vec![7; SEED_BYTES], "Roster", "acme/ana").unwrap();
        let now = 1_000_000_000;
        let step = (now / STEP_SECONDS) as i64;
        let code = totp.generate(now);
        assert_eq!(matching_step(&totp, &code, now, None), Some(step));
        assert_eq!(
            matching_step(&totp, &code, now + STEP_SECONDS, None),
            Some(step)
        );
        assert_eq!(
            matching_step(&totp, &code, now - STEP_SECONDS, None),
            Some(step)
        );
        assert_eq!(
            matching_step(&totp, &code, now + 2 * STEP_SECONDS, None),
            None
        );
        assert_eq!(
            matching_step(&totp, &code, now, Some(step)),
            None,
            "used once"
        );
        let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
        assert_eq!(matching_step(&totp, &wrong, now, None), None);
    }

    #[test]
    fn the_otpauth_uri_names_roster_and_the_account() {
        let totp = totp(vec![7; SEED_BYTES], "Roster", "acme/ana@acme.com").unwrap();
        let uri = totp.get_url();
        assert!(uri.starts_with("otpauth://totp/Roster:"), "{uri}");
        assert!(
            uri.contains(&format!("secret={}", totp.get_secret_base32())),
            "{uri}"
        );
        assert!(uri.contains("issuer=Roster"), "{uri}");
    }

    #[test]
    fn recovery_codes_are_ten_distinct_80_bit_codes_that_parse_back() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut distinct = codes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            let Code::Recovery(normalized) = Code::parse("code", code).unwrap() else {
                panic!("{code} is no recovery code");
            };
            assert_eq!(normalized, code.replace('-', ""));
        }
        let user = Uuid::new_v4();
        assert_ne!(
            recovery_code_hash(user, "a"),
            recovery_code_hash(Uuid::new_v4(), "a"),
            "salted by the user"
        );
    }
}
