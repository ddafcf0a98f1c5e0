//! Email templates: files under `templates/email/`, compiled in, rendered
//! with minijinja, which escapes HTML in `.html` templates (names come from
//! CSV files). A text template's first line is `Subject: …`.

use minijinja::Environment;
use serde::Serialize;

use crate::domain::organization::Locale;

/// What a message is about; names the template files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Invitation,
    PasswordReset,
    ImportReport,
}

impl Template {
    pub const ALL: [Template; 3] = [
        Template::Invitation,
        Template::PasswordReset,
        Template::ImportReport,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::Invitation => "invitation",
            Template::PasswordReset => "password_reset",
            Template::ImportReport => "import_report",
        }
    }

    /// What a person calls it: in logs and in the mail folder's file names.
    pub fn kind(self) -> &'static str {
        match self {
            Template::Invitation => "invitation",
            Template::PasswordReset => "password-reset",
            Template::ImportReport => "import-report",
        }
    }
}

macro_rules! template_files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../templates/email/", $name)))),*]
    };
}

const FILES: [(&str, &str); 12] = template_files!(
    "invitation.en.txt",
    "invitation.en.html",
    "invitation.pt-BR.txt",
    "invitation.pt-BR.html",
    "password_reset.en.txt",
    "password_reset.en.html",
    "password_reset.pt-BR.txt",
    "password_reset.pt-BR.html",
    "import_report.en.txt",
    "import_report.en.html",
    "import_report.pt-BR.txt",
    "import_report.pt-BR.html",
);

/// A rendered message: subject, text part and HTML part.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Templates {
    environment: Environment<'static>,
}

impl Templates {
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut environment = Environment::new();
        for (name, source) in FILES {
            environment.add_template(name, source)?;
        }
        Ok(Self { environment })
    }

    pub fn render(
        &self,
        template: Template,
        locale: Locale,
        context: &impl Serialize,
    ) -> Result<Rendered, minijinja::Error> {
        let base = format!("{}.{}", template.name(), locale.as_str());
        let text = self
            .environment
            .get_template(&format!("{base}.txt"))?
            .render(context)?;
        let html = self
            .environment
            .get_template(&format!("{base}.html"))?
            .render(context)?;
        let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
        let subject = first.strip_prefix("Subject: ").unwrap_or(first);
        // A header must stay on one line whatever a name contains.
        let subject = subject.replace(['\r', '\n'], " ").trim().to_owned();
        Ok(Rendered {
            subject,
            text: body.trim_start_matches('\n').to_owned(),
            html,
        })
    }
}

/// A time as the locale writes it.
pub fn format_time(time: chrono::DateTime<chrono::Utc>, locale: Locale) -> String {
    match locale {
        Locale::En => time.format("%B %-d, %Y, %H:%M UTC").to_string(),
        Locale::PtBr => time.format("%d/%m/%Y %H:%M UTC").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_looking_names_are_escaped_in_the_html_part_and_kept_in_the_text() {
        let templates = Templates::new().unwrap();
        let context = serde_json::json!({
            "first_name": "<script>alert(1)</script>",
            "organization": "Acme & Co",
            "username": "maria@acme.com",
            "link": "https://roster.example/register#token=rst_inv_x",
            "expire_time": "November 28, 2026, 10:00 UTC",
        });
        for locale in [Locale::En, Locale::PtBr] {
            let rendered = templates
                .render(Template::Invitation, locale, &context)
                .unwrap();
            assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
            assert!(rendered.html.contains("&lt;script&gt;"));
            assert!(rendered.html.contains("Acme &amp; Co"));
            assert!(rendered.text.contains("<script>alert(1)</script>"));
            assert!(rendered.subject.contains("Acme & Co"));
            assert!(rendered.text.contains("#token=rst_inv_x"));
        }
    }

    #[test]
    fn every_template_renders_in_every_locale() {
        let templates = Templates::new().unwrap();
        let context = serde_json::json!({
            "first_name": "Zoë", "organization": "Acme", "company": "acme-sign-in", "username": "zoe", "link": "l",
            "expire_time": "t", "status": "SUCCEEDED", "job_id": "j", "failure_message": "",
            "counts": {"rows": 3, "created": 2, "updated": 0, "deleted": 0, "unchanged": 0, "skipped": 0, "failed": 1},
            "failed_rows": [{"line": 4, "email": "x@acme.com", "errors": "email: invalid"}],
            "more_failed": 0,
        });
        for template in Template::ALL {
            for locale in [Locale::En, Locale::PtBr] {
                let rendered = templates.render(template, locale, &context).unwrap();
                assert!(!rendered.subject.is_empty() && !rendered.subject.starts_with("Subject"));
                assert!(rendered.text.contains("Zoë"), "{template:?} {locale:?}");
                assert!(rendered.html.contains("Zoë"));
                // A link's email spells out what to type at sign-in.
                if template != Template::ImportReport {
                    assert!(
                        rendered.text.contains("acme-sign-in · "),
                        "{template:?} {locale:?}"
                    );
                    assert!(rendered.html.contains("<strong>acme-sign-in</strong> · "));
                }
            }
        }
    }
}
