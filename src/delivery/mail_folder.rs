//! The development mail folder (no SMTP server configured): one `.eml` file
//! per message, named `<time>-<recipient>-<kind>.eml` so that a listing
//! sorts by time and a person finds theirs, and read back by `roster mail`
//! so that an administrator can follow a link without an SMTP server.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::templates::Template;

/// Sortable as text, and without the `:` some file systems refuse.
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.6fZ";
/// Room for any address a person reads, well under file name limits.
const MAX_RECIPIENT_CHARS: usize = 100;

/// The file name of a message to `recipient` of `kind` written at `time`.
pub fn file_name(time: DateTime<Utc>, recipient: &str, kind: &str) -> String {
    format!(
        "{}-{}-{kind}.eml",
        time.format(TIME_FORMAT),
        safe_recipient(recipient)
    )
}

/// The address as a file name part: lowercase, letters, digits and
/// `@ . + _ -` kept, anything else (a path separator, a space) `_`.
fn safe_recipient(recipient: &str) -> String {
    recipient
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "@.+_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_RECIPIENT_CHARS)
        .collect()
}

/// Writes a message into `directory`, never over another one: written
/// aside, then linked under its name (a reader never sees half a message);
/// a name already taken moves the time on by a microsecond.
pub async fn write(
    directory: &Path,
    time: DateTime<Utc>,
    recipient: &str,
    kind: &str,
    message: &[u8],
) -> Result<PathBuf> {
    tokio::fs::create_dir_all(directory).await?;
    let partial = directory.join(format!(".{}.partial", uuid::Uuid::now_v7()));
    tokio::fs::write(&partial, message).await?;
    let mut time = time;
    let written = loop {
        let path = directory.join(file_name(time, recipient, kind));
        match tokio::fs::hard_link(&partial, &path).await {
            Ok(()) => break Ok(path),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                time += chrono::Duration::microseconds(1);
            }
            Err(error) => break Err(error),
        }
    };
    tokio::fs::remove_file(&partial).await?;
    Ok(written?)
}

/// A message of the folder, decoded.
#[derive(Debug, Clone)]
pub struct StoredMail {
    pub file_name: String,
    /// When it was written.
    pub time: DateTime<Utc>,
    /// `invitation`, `password-reset`, `import-report`; empty when the file
    /// name does not say (a file of an older release).
    pub kind: String,
    pub date: String,
    pub from: String,
    /// The recipient's address.
    pub to: String,
    /// The recipient as the header gives it, with the name.
    pub to_header: String,
    pub subject: String,
    pub text: String,
}

impl StoredMail {
    /// The links of the text part, in order, each once.
    pub fn links(&self) -> Vec<String> {
        let mut links: Vec<String> = Vec::new();
        for word in self.text.split_whitespace() {
            let Some(start) = word.find("https://").or_else(|| word.find("http://")) else {
                continue;
            };
            let link = word[start..].trim_end_matches(['.', ',', ')', '>', ';', '"', '\'']);
            if !links.iter().any(|seen| seen == link) {
                links.push(link.to_owned());
            }
        }
        links
    }
}

/// The mail folder as `roster mail` reads it.
pub struct MailFolder {
    directory: PathBuf,
}

impl MailFolder {
    /// The folder, which must exist: `roster serve` creates it with its
    /// first email when no SMTP server is configured.
    pub fn open(directory: &Path) -> Result<Self> {
        if !directory.is_dir() {
            bail!(
                "no mail folder at {}: `roster serve` writes emails there when no SMTP server is \
                 configured (--smtp-url unset), once it has sent one; give the server's data \
                 directory with --data-dir",
                std::path::absolute(directory)
                    .unwrap_or_else(|_| directory.to_owned())
                    .display()
            );
        }
        Ok(Self {
            directory: directory.to_owned(),
        })
    }

    /// The messages, newest first, to `to` (ignoring case) when given.
    /// Files are read only as far as the iterator is taken.
    pub fn latest<'a>(
        &'a self,
        to: Option<&'a str>,
    ) -> Result<impl Iterator<Item = Result<StoredMail>> + 'a> {
        let mut files: Vec<(DateTime<Utc>, String)> = Vec::new();
        let entries = std::fs::read_dir(&self.directory)
            .with_context(|| format!("cannot read {}", self.directory.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".eml") {
                continue;
            }
            let time = match time_of(&name) {
                Some(time) => time,
                None => entry.metadata()?.modified()?.into(),
            };
            files.push((time, name));
        }
        files.sort_by(|a, b| b.cmp(a));
        Ok(files
            .into_iter()
            .map(|(time, name)| self.read_file(&name, time))
            .filter(move |mail| match (mail, to) {
                (Ok(mail), Some(to)) => mail.to.eq_ignore_ascii_case(to.trim()),
                _ => true,
            }))
    }

    /// One message by its file name (as `latest` lists it) or its path.
    pub fn read(&self, file: &str) -> Result<StoredMail> {
        let path = Path::new(file);
        let path = if path.components().count() > 1 {
            path.to_owned()
        } else {
            self.directory.join(path)
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let time = match time_of(&name) {
            Some(time) => time,
            None => std::fs::metadata(&path)
                .with_context(|| format!("no message {}", path.display()))?
                .modified()?
                .into(),
        };
        parse(&path, name, time)
    }

    fn read_file(&self, name: &str, time: DateTime<Utc>) -> Result<StoredMail> {
        parse(&self.directory.join(name), name.to_owned(), time)
    }
}

fn parse(path: &Path, file_name: String, time: DateTime<Utc>) -> Result<StoredMail> {
    let raw = std::fs::read(path).with_context(|| format!("no message {}", path.display()))?;
    let message = mail_parser::MessageParser::default()
        .parse(&raw)
        .with_context(|| format!("{} is not an email", path.display()))?;
    let first_address = |address: Option<&mail_parser::Address>| {
        address
            .and_then(|address| address.first())
            .map(|addr| {
                let email = addr.address().unwrap_or_default();
                let header = match addr.name() {
                    Some(name) => format!("{name} <{email}>"),
                    None => email.to_owned(),
                };
                (email.to_owned(), header)
            })
            .unwrap_or_default()
    };
    let (to, to_header) = first_address(message.to());
    let (_, from) = first_address(message.from());
    Ok(StoredMail {
        kind: kind_of(&file_name).to_owned(),
        file_name,
        time,
        date: message
            .date()
            .map(|date| date.to_rfc822())
            .unwrap_or_default(),
        from,
        to,
        to_header,
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message.body_text(0).unwrap_or_default().into_owned(),
    })
}

/// The time a file name starts with.
fn time_of(file_name: &str) -> Option<DateTime<Utc>> {
    let (time, _) = file_name.split_once('-')?;
    let time = time.strip_suffix('Z')?;
    NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.f")
        .ok()
        .map(|time| time.and_utc())
}

/// The kind a file name ends with, or "".
fn kind_of(file_name: &str) -> &'static str {
    let stem = file_name.strip_suffix(".eml").unwrap_or(file_name);
    Template::ALL
        .iter()
        .map(|template| template.kind())
        .find(|kind| {
            stem.strip_suffix(kind)
                .is_some_and(|rest| rest.ends_with('-'))
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_by_time_and_name_the_recipient_and_kind() {
        let time = DateTime::parse_from_rfc3339("2026-12-01T10:45:12.345678Z")
            .unwrap()
            .to_utc();
        let name = file_name(time, "Ana.Souza+hr@Acme.test", "password-reset");
        assert_eq!(
            name,
            "20261201T104512.345678Z-ana.souza+hr@acme.test-password-reset.eml"
        );
        assert_eq!(time_of(&name), Some(time));
        assert_eq!(kind_of(&name), "password-reset");
        assert_eq!(kind_of("0193a0b2-7c1e-7000-8000-000000000000.eml"), "");
        let later = file_name(
            time + chrono::Duration::seconds(1),
            "a@b.test",
            "invitation",
        );
        assert!(later > name);
    }

    #[test]
    fn nothing_in_an_address_can_leave_the_folder_or_hide_the_file() {
        let name = file_name(Utc::now(), "../../etc/x y@b.test\n", "invitation");
        assert!(!name.contains('/') && !name.contains(' ') && !name.contains('\n'));
        assert!(
            name.contains("-.._.._etc_x_y@b.test-invitation.eml"),
            "{name}"
        );
        let long = "a".repeat(300) + "@b.test";
        assert!(file_name(Utc::now(), &long, "invitation").len() < 160);
    }

    #[test]
    fn links_are_read_from_the_text_each_once() {
        let mail = StoredMail {
            file_name: String::new(),
            time: Utc::now(),
            kind: String::new(),
            date: String::new(),
            from: String::new(),
            to: String::new(),
            to_header: String::new(),
            subject: String::new(),
            text: "Go to https://r.test/register#token=rst_inv_a.\n(or http://r.test/x) \
                   https://r.test/register#token=rst_inv_a"
                .into(),
        };
        assert_eq!(
            mail.links(),
            ["https://r.test/register#token=rst_inv_a", "http://r.test/x"]
        );
    }
}
