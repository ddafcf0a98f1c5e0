//! `page_size` and `page_token` of every `List*` call.
//!
//! A page token carries the keyset position after the last item and a
//! fingerprint of the query's filters, so a token reused with other filters
//! is refused instead of silently skipping or repeating items.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::FieldViolation;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Up to this many matches `total_size` is exact; above, an estimate.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// 0 means the default; larger than the maximum is lowered; negative is refused.
    pub fn parse(raw: i32) -> Result<Self, FieldViolation> {
        match raw {
            i32::MIN..=-1 => Err(FieldViolation::new(
                "page_size",
                "NEGATIVE",
                "must not be negative",
            )),
            0 => Ok(Self(DEFAULT_PAGE_SIZE)),
            n => Ok(Self(n.unsigned_abs().min(MAX_PAGE_SIZE))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// One more than the page, to learn whether a next page exists.
    pub fn fetch_limit(self) -> i64 {
        i64::from(self.0) + 1
    }
}

/// Which page of a list: how many items, and the token of the page before
/// (empty for the first page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: PageSize,
    pub token: String,
}

impl PageRequest {
    /// The request's `page_size` and `page_token`; only the size can be refused
    /// here, the token is checked against the list's query when it is read.
    pub fn parse(raw_size: i32, token: String) -> Result<Self, FieldViolation> {
        Ok(Self {
            size: PageSize::parse(raw_size)?,
            token,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct TokenBody<K> {
    /// Fingerprint of the filters the token was issued for.
    q: String,
    /// Keyset position after the last item returned.
    k: K,
}

/// Fingerprint of a query's filters, computed from any serializable value.
pub fn fingerprint<F: Serialize>(filters: &F) -> String {
    let canonical = serde_json::to_vec(filters).unwrap_or_default();
    Sha256::digest(canonical)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a page token into its keyset position; empty means the first page.
pub fn decode_page_token<K: DeserializeOwned>(
    raw: &str,
    query_fingerprint: &str,
) -> Result<Option<K>, FieldViolation> {
    if raw.is_empty() {
        return Ok(None);
    }
    let body: TokenBody<K> = URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            FieldViolation::new(
                "page_token",
                "MALFORMED",
                "is not a page token of this list",
            )
        })?;
    if body.q != query_fingerprint {
        return Err(FieldViolation::new(
            "page_token",
            "QUERY_CHANGED",
            "was issued for a different query; start again without a page token",
        ));
    }
    Ok(Some(body.k))
}

pub fn encode_page_token<K: Serialize>(position: &K, query_fingerprint: &str) -> String {
    let body = TokenBody {
        q: query_fingerprint.to_owned(),
        k: position,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap_or_default())
}

/// A `total_size` exact up to `EXACT_COUNT_LIMIT`, estimated above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotalSize {
    pub value: i64,
    pub estimated: bool,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
    pub total_size: TotalSize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_caps_and_refuses_negative() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 50);
        assert_eq!(PageSize::parse(5000).unwrap().get(), 1000);
        assert_eq!(PageSize::parse(7).unwrap().get(), 7);
        assert_eq!(PageSize::parse(-1).unwrap_err().field, "page_size");
    }

    #[test]
    fn page_tokens_are_bound_to_their_query() {
        let token = encode_page_token(&(5_i64, "x"), "abc");
        let position: Option<(i64, String)> = decode_page_token(&token, "abc").unwrap();
        assert_eq!(position, Some((5, "x".into())));
        let other = decode_page_token::<(i64, String)>(&token, "def").unwrap_err();
        assert_eq!(other.code, "QUERY_CHANGED");
        assert_eq!(
            decode_page_token::<(i64, String)>("garbage!", "abc")
                .unwrap_err()
                .code,
            "MALFORMED"
        );
    }
}
