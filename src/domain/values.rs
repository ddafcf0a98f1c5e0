//! The values of a user (spec §1), parsed once here for the API and the
//! import alike. Each `parse` takes the field path to report (`user.email`
//! for the API, `email` for an import row).

use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use super::{
    name::{invisible_character, invisible_violation},
    FieldViolation,
};

const MAX_PERSON_NAME: usize = 100;
const MAX_EMAIL: usize = 254;
const MAX_EMAIL_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;
const MAX_DOMAIN_LABEL: usize = 63;
const MAX_EXTERNAL_ID: usize = 100;

/// Lowercase with accents removed: the key for search and accent-insensitive order.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A first or last name: trimmed, NFC-normalized, 1–100 characters, any script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let normalized: String = raw.trim().nfc().collect();
        if normalized.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        if normalized.chars().any(char::is_control) {
            return Err(FieldViolation::new(
                field,
                "CONTROL_CHARACTER",
                "must not contain control characters",
            ));
        }
        if let Some(violation) = invisible_violation(&normalized, field) {
            return Err(violation);
        }
        if normalized.chars().count() > MAX_PERSON_NAME {
            return Err(FieldViolation::new(
                field,
                "TOO_LONG",
                format!("must be at most {MAX_PERSON_NAME} characters"),
            ));
        }
        Ok(Self(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address as typed (trimmed); compared ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let email = raw.trim();
        let invalid = |why: &str| {
            FieldViolation::new(
                field,
                "INVALID_EMAIL",
                format!("is not a valid email address: {why}"),
            )
        };
        if email.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        if email.chars().count() > MAX_EMAIL {
            return Err(invalid(&format!("longer than {MAX_EMAIL} characters")));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains spaces"));
        }
        // An invisible character would make a second address that looks the same.
        if invisible_character(email).is_some() {
            return Err(invalid("contains an invisible or text-direction character"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid("no @"));
        };
        if domain.contains('@') {
            return Err(invalid("more than one @"));
        }
        if local.is_empty() || !local.is_ascii() || local.len() > MAX_EMAIL_LOCAL {
            return Err(invalid(&format!(
                "the part before @ must be 1–{MAX_EMAIL_LOCAL} ASCII characters"
            )));
        }
        if !is_dot_atom(local) {
            return Err(invalid(
                "the part before @ may hold letters, digits and ! # $ % & ' * + - / = ? ^ _ ` { | } ~, with single dots between them",
            ));
        }
        check_domain(domain).map_err(invalid)?;
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain, lowercased.
    pub fn domain(&self) -> String {
        self.0.rsplit('@').next().unwrap_or_default().to_lowercase()
    }

    pub fn is_on_public_domain(&self) -> bool {
        let domain = self.domain();
        public_email_domains().any(|public| {
            domain == public
                || domain
                    .strip_suffix(public)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

/// RFC 5322's dot-atom: atext characters, single dots between them (no
/// quoted local parts, no `<>()[]:;@\\,"` anywhere).
fn is_dot_atom(local: &str) -> bool {
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(atext))
}

/// A mail domain: its IDNA ASCII form is dot-separated labels of letters,
/// digits and hyphens (none leading or trailing), 1–63 bytes each, 253 in
/// all, at least two labels and a top-level label that is not a number (no
/// IP addresses). An internationalized domain must be typed in its normal
/// form (what IDNA maps it to, ignoring case), so one visible address is
/// one address.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    const NEEDS_DOT: &str = "the domain needs a dot between non-empty labels";
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err(NEEDS_DOT);
    }
    let ascii = idna::domain_to_ascii_strict(domain)
        .map_err(|_| "the domain is not a valid domain name")?;
    if ascii.len() > MAX_DOMAIN {
        return Err("the domain is longer than 253 characters");
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > MAX_DOMAIN_LABEL {
            return Err("each part of the domain must be 1–63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("the domain may hold only letters, digits, hyphens and dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part of the domain must not start or end with a hyphen");
        }
    }
    if labels.len() < 2 {
        return Err(NEEDS_DOT);
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the domain must be a name, not an IP address");
    }
    if !domain.is_ascii() {
        let (normal, _) = idna::domain_to_unicode(&ascii);
        if normal != domain.to_lowercase() {
            return Err("the domain must be typed in its usual form (as IDNA writes it)");
        }
    }
    Ok(())
}

const PUBLIC_EMAIL_DOMAINS: &str = include_str!("../../data/public_email_domains.txt");

/// The public mail providers' domains (`data/public_email_domains.txt`),
/// lowercase.
pub(crate) fn public_email_domains() -> impl Iterator<Item = &'static str> {
    PUBLIC_EMAIL_DOMAINS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// A login: a valid email address, or 3–64 of letters, digits and `. _ - @ +`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let username = raw.trim();
        if username.is_empty() {
            return Err(FieldViolation::new(field, "REQUIRED", "must not be empty"));
        }
        if username.contains('@') && Email::parse(username, field).is_ok() {
            return Ok(Self(username.to_owned()));
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+');
        if !(3..=64).contains(&username.chars().count()) || !username.chars().all(allowed) {
            return Err(FieldViolation::new(
                field,
                "INVALID_USERNAME",
                "must be an email address or 3–64 characters of letters, digits and . _ - @ +",
            ));
        }
        Ok(Self(username.to_owned()))
    }

    pub fn from_email(email: &Email) -> Self {
        Self(email.as_str().to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164: `+` and 8–15 digits, stored without separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or_default();
        if compact.starts_with('+')
            && (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Self(compact));
        }
        let description = if raw.to_ascii_uppercase().contains("E+") {
            "looks like a number a spreadsheet reformatted (e.g. 5,51199E+12); format the column as text and give + and 8–15 digits"
        } else {
            "must be + and 8–15 digits, e.g. +5511999998888 (spaces, dashes, dots and parentheses are ignored)"
        };
        Err(FieldViolation::new(field, "INVALID_PHONE", description))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An identifier from another system (an HR employee number), 1–100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let id = raw.trim();
        if id.is_empty() || id.chars().count() > MAX_EXTERNAL_ID || id.chars().any(char::is_control)
        {
            return Err(FieldViolation::new(
                field,
                "INVALID_EXTERNAL_ID",
                format!("must be 1–{MAX_EXTERNAL_ID} characters without control characters"),
            ));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read-only text views of the parsed user values, so that they are kept
/// as types and still read (and serialize, for the audit trail) as text.
/// `from_stored` takes back what the users table holds: it was parsed on its
/// way in, and rules tightened since must not make a stored user unreadable.
macro_rules! text_value {
    ($($name:ident),+) => {$(
        impl $name {
            pub(crate) fn from_stored(stored: String) -> Self {
                Self(stored)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Read back from what Roster stored (a job's options), as `from_stored`.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from_stored)
            }
        }
    )+};
}

text_value!(PersonName, Email, Username, Phone, ExternalId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_nfc_and_any_script() {
        let decomposed = "Sa\u{0303}o"; // "São" with a combining tilde
        assert_eq!(
            PersonName::parse(&format!("  {decomposed} "), "f")
                .unwrap()
                .as_str(),
            "São"
        );
        assert_eq!(PersonName::parse("김", "f").unwrap().as_str(), "김");
        assert_eq!(PersonName::parse("Zoë\n", "f").unwrap().as_str(), "Zoë");
        assert_eq!(
            PersonName::parse("a\u{0}b", "f").unwrap_err().code,
            "CONTROL_CHARACTER"
        );
        assert_eq!(
            PersonName::parse(&"é".repeat(101), "f").unwrap_err().code,
            "TOO_LONG"
        );
        assert_eq!(
            PersonName::parse(&"é".repeat(100), "f")
                .unwrap()
                .as_str()
                .chars()
                .count(),
            100
        );
    }

    #[test]
    fn emails_follow_the_rules() {
        assert!(Email::parse(" Ana@Example.com ", "e").is_ok());
        assert!(
            Email::parse("ana@exämple.com.br", "e").is_ok(),
            "internationalized domain"
        );
        for bad in [
            "ana",
            "ana@",
            "@x.com",
            "a b@x.com",
            "ana@localhost",
            "a@b@c.com",
            "jõao@x.com",
            "ana@x..com",
            "ana@-acme.com",
            "ana@acme-.com",
            "a<b>@x.test",
            "a@b.test>",
            "<a@b.test",
            "a@[127.0.0.1]",
            "a@127.0.0.1",
            "a@acme.test\u{200B}",
            "a\u{200B}@acme.test",
            "a@ac\u{AD}me.test",
            "a@ac_me.test",
            "a..b@acme.test",
            ".a@acme.test",
            "a\"b@acme.test",
            "a@acme.com\u{202E}",
            "a@exa\u{308}mple.com",
        ] {
            assert!(Email::parse(bad, "user.email").is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@x.com", "a".repeat(65)), "e").is_err());
        assert_eq!(
            Email::parse("", "user.email").unwrap_err().field,
            "user.email"
        );
    }

    #[test]
    fn domains_are_checked_by_label_and_length() {
        let label = "a".repeat(63);
        assert!(Email::parse(&format!("a@{label}.com"), "e").is_ok());
        assert!(Email::parse(&format!("a@{label}a.com"), "e").is_err());
        assert!(Email::parse("o'brien+tag@Acme-Corp.Example.COM", "e").is_ok());
        assert!(Email::parse("ana@xn--exmple-cua.com.br", "e").is_ok());
        assert!(
            Email::parse("ana@EXÄMPLE.com", "e").is_ok(),
            "case is ignored"
        );
    }

    #[test]
    fn public_domains_include_subdomains() {
        assert!(Email::parse("a@gmail.com", "e")
            .unwrap()
            .is_on_public_domain());
        assert!(Email::parse("a@mail.Yahoo.com", "e")
            .unwrap()
            .is_on_public_domain());
        assert!(!Email::parse("a@notgmail.com", "e")
            .unwrap()
            .is_on_public_domain());
        assert!(!Email::parse("a@acme.com", "e")
            .unwrap()
            .is_on_public_domain());
    }

    #[test]
    fn usernames_are_emails_or_simple_logins() {
        assert!(Username::parse("ana.silva_01+x", "u").is_ok());
        assert!(Username::parse("ana@acme.com", "u").is_ok());
        assert!(Username::parse("ab", "u").is_err());
        assert!(Username::parse("ana silva", "u").is_err());
        assert!(Username::parse(&"a".repeat(65), "u").is_err());
    }

    #[test]
    fn phones_normalize_to_e164() {
        assert_eq!(
            Phone::parse("+55 (11) 99999-8888", "p").unwrap().as_str(),
            "+5511999998888"
        );
        assert_eq!(
            Phone::parse("+1.212.555.0100", "p").unwrap().as_str(),
            "+12125550100"
        );
        assert!(Phone::parse("11999998888", "p").is_err());
        assert!(Phone::parse("+123", "p").is_err());
        assert!(Phone::parse("5,51199E+12", "p")
            .unwrap_err()
            .description
            .contains("spreadsheet"));
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        assert_eq!(fold("São João ÁLVARES Zoë"), "sao joao alvares zoe");
        assert_eq!(fold("Ñandú"), "nandu");
    }

    #[test]
    fn person_names_refuse_what_would_display_as_other_text() {
        for spoofed in [
            "Ana\u{202E}avliS",    // right-to-left override
            "\u{2067}Ana\u{2069}", // right-to-left isolate
            "Ana\u{200F}",         // right-to-left mark
            "Ana\u{061C}",         // Arabic letter mark
            "Ana\u{2028}Admin",    // line separator
            "Ana\u{2029}Admin",    // paragraph separator
            "An\u{200B}a",         // zero-width space (a format character)
            "Ana\u{200D}",         // a joiner outside a word
        ] {
            assert_eq!(
                PersonName::parse(spoofed, "user.last_name")
                    .unwrap_err()
                    .code,
                "INVISIBLE_CHARACTER",
                "{spoofed:?}"
            );
        }
    }

    #[test]
    fn person_names_keep_the_joiners_real_scripts_need_inside_a_word() {
        for name in [
            "\u{645}\u{6CC}\u{200C}\u{62E}\u{648}\u{627}\u{647}", // Persian
            "\u{915}\u{94D}\u{200D}\u{937}",                      // Devanagari
        ] {
            assert_eq!(PersonName::parse(name, "f").unwrap().as_str(), name);
        }
    }

    #[test]
    fn emails_refuse_a_trailing_dot_and_invisible_characters_in_the_domain() {
        for bad in [
            "ana@acme.test.",
            "ana@acme\u{AD}.test",
            "ana@acme.test\u{200B}",
        ] {
            assert_eq!(
                Email::parse(bad, "user.email").unwrap_err().field,
                "user.email",
                "{bad:?}"
            );
        }
    }
}
