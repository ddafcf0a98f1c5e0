//! SCIM filters and PATCH paths (RFC 7644 §3.4.2.2, §3.5.2): a small
//! recursive-descent parser. `or` binds loosest, then `and`, then `not` and
//! grouping; keywords and attribute names ignore case. The one crate for
//! this (scim-filter) evaluates filters in memory over serde values, has one
//! maintainer and undocumented nom errors; we need an AST to turn into SQL
//! and errors that say where the filter went wrong.

use std::fmt;

use serde_json::Value;

/// The longest filter or path read: a provider sends short ones.
pub const MAX_FILTER_CHARS: usize = 4096;
/// How deep groups, `not`s and value filters may nest (the parser recurses).
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    Present(AttrPath),
    /// `emails[type eq "work"]`: some value of a multi-valued attribute matches.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// `[uri:]name[.sub]`, as written (the caller decides what a name means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }
}

/// A PATCH operation's `path`: an attribute, or a value filter on a
/// multi-valued one with an optional sub-attribute
/// (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter.
    pub sub: Option<String>,
}

/// Where and why a filter or path could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Character offset (0-based) where the problem is.
    pub at: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)
    }
}

pub fn parse_filter(input: &str) -> Result<Filter, ParseError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.or()?;
    parser.end()?;
    Ok(filter)
}

pub fn parse_path(input: &str) -> Result<PatchPath, ParseError> {
    let mut parser = Parser::new(input)?;
    let attr = parser.attr_path()?;
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.eat('[') {
        if path.attr.sub.is_some() {
            return Err(parser.error("a value filter follows an attribute, not a sub-attribute"));
        }
        path.filter = Some(parser.or()?);
        parser.expect(']')?;
        if parser.eat('.') {
            path.sub = Some(parser.name()?);
        }
    }
    parser.end()?;
    Ok(path)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn new(input: &str) -> Result<Self, ParseError> {
        let chars: Vec<char> = input.chars().collect();
        if chars.len() > MAX_FILTER_CHARS {
            return Err(ParseError {
                at: MAX_FILTER_CHARS,
                message: format!("longer than {MAX_FILTER_CHARS} characters"),
            });
        }
        Ok(Self {
            chars,
            at: 0,
            depth: 0,
        })
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            at: self.at,
            message: message.into(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_spaces();
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, wanted: char) -> bool {
        if self.peek() == Some(wanted) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, wanted: char) -> Result<(), ParseError> {
        if self.eat(wanted) {
            Ok(())
        } else {
            Err(self.error(format!("expected `{wanted}`, found {}", self.found())))
        }
    }

    /// What is at the cursor, quoted (for errors).
    fn found(&self) -> String {
        let rest: String = self.chars[self.at..]
            .iter()
            .skip_while(|c| c.is_whitespace())
            .take(12)
            .collect();
        if rest.is_empty() {
            "the end of the filter".into()
        } else {
            format!("`{rest}`")
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error(format!("unexpected {}", self.found()))),
        }
    }

    /// The word at the cursor (letters, digits and `_ - : . $`), not consumed.
    fn word(&mut self) -> (String, usize) {
        self.skip_spaces();
        let start = self.at;
        let mut end = start;
        while self
            .chars
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || "_-:.$".contains(*c))
        {
            end += 1;
        }
        (self.chars[start..end].iter().collect(), end)
    }

    /// Consumes `keyword` (any case) when it is the next word.
    fn keyword(&mut self, keyword: &str) -> bool {
        let (word, end) = self.word();
        if word.eq_ignore_ascii_case(keyword) {
            self.at = end;
            true
        } else {
            false
        }
    }

    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.atom()?;
        while self.keyword("and") {
            let right = self.atom()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Filter, ParseError> {
        if self.eat('(') {
            let inner = self.nested(Self::or)?;
            self.expect(')')?;
            return Ok(inner);
        }
        let (word, end) = self.word();
        if word.eq_ignore_ascii_case("not") {
            let after = self.at;
            self.at = end;
            if self.eat('(') {
                let inner = self.nested(Self::or)?;
                self.expect(')')?;
                return Ok(Filter::Not(Box::new(inner)));
            }
            // An attribute called `not`.
            self.at = after;
        }
        let path = self.attr_path()?;
        if self.eat('[') {
            if path.sub.is_some() {
                return Err(self.error("a value filter follows an attribute, not a sub-attribute"));
            }
            let filter = self.nested(Self::or)?;
            self.expect(']')?;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
            });
        }
        self.comparison(path)
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, ParseError> {
        let (word, end) = self.word();
        if word.eq_ignore_ascii_case("pr") {
            self.at = end;
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(&word) else {
            return Err(self.error(format!(
                "expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after `{path}`, found {}",
                self.found()
            )));
        };
        self.at = end;
        let value = self.value()?;
        Ok(Filter::Compare { path, op, value })
    }

    /// A JSON value: a string, a number, true, false or null.
    fn value(&mut self) -> Result<Value, ParseError> {
        if self.peek() == Some('"') {
            return self.string();
        }
        let (word, end) = self.word();
        let value = match word.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ => match serde_json::from_str::<serde_json::Number>(&word) {
                Ok(number) if !word.is_empty() => Value::Number(number),
                _ => {
                    return Err(self.error(format!(
                        "expected a value (a \"quoted string\", a number, true, false or null), found {}",
                        self.found()
                    )))
                }
            },
        };
        self.at = end;
        Ok(value)
    }

    /// A JSON string, escapes and all.
    fn string(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        let mut end = start + 1;
        loop {
            match self.chars.get(end) {
                None => return Err(self.error("the string that starts here has no closing quote")),
                Some('\\') => end += 2,
                Some('"') => break,
                Some(_) => end += 1,
            }
        }
        let literal: String = self.chars[start..=end].iter().collect();
        let value = serde_json::from_str::<String>(&literal)
            .map_err(|_| self.error("the string that starts here has an invalid escape"))?;
        self.at = end + 1;
        Ok(Value::String(value))
    }

    /// `[uri:]name[.sub]`: the URI is everything up to the last `:`.
    fn attr_path(&mut self) -> Result<AttrPath, ParseError> {
        let (word, end) = self.word();
        let (uri, rest) = match word.rfind(':') {
            Some(colon) => (Some(word[..colon].to_owned()), &word[colon + 1..]),
            None => (None, word.as_str()),
        };
        let (name, sub) = match rest.split_once('.') {
            Some((name, sub)) => (name, Some(sub)),
            None => (rest, None),
        };
        if !is_name(name) || sub.is_some_and(|sub| !is_name(sub)) {
            return Err(self.error(format!(
                "expected an attribute name, found {}",
                self.found()
            )));
        }
        self.at = end;
        Ok(AttrPath {
            uri,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let (word, end) = self.word();
        if !is_name(&word) {
            return Err(self.error(format!(
                "expected a sub-attribute name, found {}",
                self.found()
            )));
        }
        self.at = end;
        Ok(word)
    }
}

/// ATTRNAME: a letter (or `$`, as in `$ref`), then letters, digits, `_` or `-`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(name: &str) -> AttrPath {
        let (name, sub) = match name.split_once('.') {
            Some((name, sub)) => (name, Some(sub.to_owned())),
            None => (name, None),
        };
        AttrPath {
            uri: None,
            name: name.to_owned(),
            sub,
        }
    }

    fn eq(name: &str, value: &str) -> Filter {
        Filter::Compare {
            path: path(name),
            op: CompareOp::Eq,
            value: json!(value),
        }
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let parsed = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert_eq!(parsed, or(eq("a", "1"), and(eq("b", "2"), eq("c", "3"))));
        let parsed = parse_filter(r#"a eq "1" and b eq "2" or c eq "3""#).unwrap();
        assert_eq!(parsed, or(and(eq("a", "1"), eq("b", "2")), eq("c", "3")));
    }

    #[test]
    fn grouping_overrides_precedence() {
        let parsed = parse_filter(r#"(a eq "1" or b eq "2") and c eq "3""#).unwrap();
        assert_eq!(parsed, and(or(eq("a", "1"), eq("b", "2")), eq("c", "3")));
    }

    #[test]
    fn not_negates_a_group() {
        let parsed = parse_filter(r#"not (a eq "1") and NOT(b pr)"#).unwrap();
        assert_eq!(
            parsed,
            and(
                Filter::Not(Box::new(eq("a", "1"))),
                Filter::Not(Box::new(Filter::Present(path("b"))))
            )
        );
    }

    #[test]
    fn keywords_and_operators_ignore_case() {
        let parsed = parse_filter(r#"userName EQ "x" AnD b Pr"#).unwrap();
        assert_eq!(parsed, and(eq("userName", "x"), Filter::Present(path("b"))));
    }

    #[test]
    fn strings_are_json_strings() {
        let parsed = parse_filter(r#"a eq "say \"hi\" and or \u00e9""#).unwrap();
        assert_eq!(parsed, eq("a", "say \"hi\" and or é"));
    }

    #[test]
    fn values_may_be_booleans_numbers_and_null() {
        for (raw, value) in [
            ("true", json!(true)),
            ("False", json!(false)),
            ("null", json!(null)),
            ("42", json!(42)),
            ("-1.5", json!(-1.5)),
        ] {
            let parsed = parse_filter(&format!("a eq {raw}")).unwrap();
            assert_eq!(
                parsed,
                Filter::Compare {
                    path: path("a"),
                    op: CompareOp::Eq,
                    value
                },
                "{raw}"
            );
        }
    }

    #[test]
    fn attribute_paths_take_a_schema_uri_and_a_sub_attribute() {
        let parsed =
            parse_filter(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName sw "O""#)
                .unwrap();
        assert_eq!(
            parsed,
            Filter::Compare {
                path: AttrPath {
                    uri: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
                    name: "name".into(),
                    sub: Some("familyName".into()),
                },
                op: CompareOp::Sw,
                value: json!("O"),
            }
        );
    }

    #[test]
    fn value_paths_filter_a_multi_valued_attribute() {
        let parsed = parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        assert_eq!(
            parsed,
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(and(
                    eq("type", "work"),
                    Filter::Compare {
                        path: path("value"),
                        op: CompareOp::Co,
                        value: json!("@example.com")
                    }
                )),
            }
        );
    }

    #[test]
    fn patch_paths_take_a_value_filter_and_a_sub_attribute() {
        let parsed = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(
            parsed,
            PatchPath {
                attr: path("emails"),
                filter: Some(eq("type", "work")),
                sub: Some("value".into()),
            }
        );
        assert_eq!(
            parse_path("name.givenName").unwrap(),
            PatchPath {
                attr: path("name.givenName"),
                filter: None,
                sub: None
            }
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        for (filter, at, words) in [
            (r#"userName eq"#, 11, "expected a value"),
            (r#"userName equals "x""#, 9, "expected an operator"),
            (r#"userName eq "x"#, 12, "no closing quote"),
            (r#"(userName eq "x""#, 16, "expected `)`"),
            (r#"userName eq "x" extra"#, 16, "unexpected `extra`"),
            (r#"eq "x""#, 3, "expected an operator"),
            (r#""x" eq userName"#, 0, "expected an attribute name"),
            (r#"emails[type eq "work""#, 21, "expected `]`"),
            ("", 0, "expected an attribute name"),
        ] {
            let error = parse_filter(filter).unwrap_err();
            assert_eq!(error.at, at, "{filter}: {error}");
            assert!(error.message.contains(words), "{filter}: {error}");
        }
    }

    #[test]
    fn deep_nesting_and_long_filters_are_refused() {
        let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
        assert!(parse_filter(&deep).unwrap_err().message.contains("nested"));
        let long = format!("a eq \"{}\"", "x".repeat(MAX_FILTER_CHARS));
        assert!(parse_filter(&long).unwrap_err().message.contains("longer"));
    }
}
