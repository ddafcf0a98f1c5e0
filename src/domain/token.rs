//! Bearer secrets: 256 random bits behind a recognizable prefix, stored only
//! as their SHA-256 hash.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use rand::{rngs::OsRng, RngCore};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::text_state::text_states;

const SECRET_BYTES: usize = 32;
/// base64url without padding of 32 bytes.
const ENCODED_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    ApiKey,
    AccessToken,
    /// In an invitation link: registers the first password.
    Invitation,
    /// In a reset link: sets a new password.
    PasswordReset,
    /// Between a password and a second factor's code (CompleteLogin).
    LoginChallenge,
}

text_states! {
    /// What a link token is for (`onboarding_tokens.purpose`). `ALL` is what
    /// an email change or a new password revokes.
    LinkPurpose {
        Invitation => "INVITATION",
        PasswordReset => "PASSWORD_RESET",
    }
}

impl TokenKind {
    /// The purpose of a link token of this kind; API keys and access tokens are no links.
    pub fn link_purpose(self) -> Option<LinkPurpose> {
        match self {
            TokenKind::Invitation => Some(LinkPurpose::Invitation),
            TokenKind::PasswordReset => Some(LinkPurpose::PasswordReset),
            TokenKind::ApiKey | TokenKind::AccessToken | TokenKind::LoginChallenge => None,
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::ApiKey => "rst_key_",
            TokenKind::AccessToken => "rst_at_",
            TokenKind::Invitation => "rst_inv_",
            TokenKind::PasswordReset => "rst_pwr_",
            TokenKind::LoginChallenge => "rst_lc_",
        }
    }
}

/// A secret shown once to its owner. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn generate(kind: TokenKind) -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(format!(
            "{}{}",
            kind.prefix(),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The SHA-256 of a secret: what the database stores and looks up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub Vec<u8>);

impl TokenHash {
    fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).to_vec())
    }
}

/// A bearer token that has the shape of one of ours, not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub kind: TokenKind,
    pub hash: TokenHash,
}

impl PresentedToken {
    /// A bearer token: an API key or an access token. `None` when it cannot
    /// be one of ours (wrong prefix or shape).
    pub fn parse(raw: &str) -> Option<Self> {
        Self::parse_as(raw, &[TokenKind::ApiKey, TokenKind::AccessToken])
    }

    /// A token of one of `kinds`, e.g. an invitation link's.
    pub fn parse_as(raw: &str, kinds: &[TokenKind]) -> Option<Self> {
        let kind = kinds
            .iter()
            .copied()
            .find(|kind| raw.starts_with(kind.prefix()))?;
        let body = &raw[kind.prefix().len()..];
        let well_formed = body.len() == ENCODED_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self {
            kind,
            hash: TokenHash::of(raw),
        })
    }
}

/// A stored invitation or reset link with what redeeming it needs.
#[derive(Debug, Clone)]
pub struct LinkRecord {
    pub organization_id: Uuid,
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: LinkPurpose,
    pub expire_time: DateTime<Utc>,
    pub used_time: Option<DateTime<Utc>>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub organization_name: String,
    pub organization_locale: String,
    pub username: String,
    pub onboarded: bool,
}

/// What the auth layer needs of a presented user access token.
#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub expire_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
    /// As recorded when the token was read (see `authentication::Uses`).
    pub last_used_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_back_to_their_kind_and_hash() {
        let secret = Secret::generate(TokenKind::ApiKey);
        assert!(secret.expose().starts_with("rst_key_"));
        let presented = PresentedToken::parse(secret.expose()).unwrap();
        assert_eq!(presented.kind, TokenKind::ApiKey);
        assert_eq!(presented.hash, secret.hash());
        assert_eq!(presented.hash.0.len(), 32);
    }

    #[test]
    fn secrets_are_distinct_and_never_debug_printed() {
        let a = Secret::generate(TokenKind::AccessToken);
        let b = Secret::generate(TokenKind::AccessToken);
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn link_tokens_are_not_bearer_tokens() {
        let invitation = Secret::generate(TokenKind::Invitation);
        assert!(PresentedToken::parse(invitation.expose()).is_none());
        let presented =
            PresentedToken::parse_as(invitation.expose(), &[TokenKind::Invitation]).unwrap();
        assert_eq!(presented.hash, invitation.hash());
        assert!(
            PresentedToken::parse_as(invitation.expose(), &[TokenKind::PasswordReset]).is_none()
        );
    }

    #[test]
    fn malformed_tokens_are_not_ours() {
        assert!(PresentedToken::parse("rst_key_short").is_none());
        assert!(PresentedToken::parse(&format!("xyz_{}", "a".repeat(43))).is_none());
        assert!(PresentedToken::parse(&format!("rst_at_{}!", "a".repeat(42))).is_none());
    }
}
