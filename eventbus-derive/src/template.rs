//! Channel templates: `user:{user_id}:notifications`.

use std::fmt;

/// A parsed channel: literal text and `{placeholder}`s, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
}

/// One piece of a channel template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Literal channel text.
    Text(String),
    /// The text between `{` and `}`: a field name or a tuple index.
    Placeholder(String),
}

/// A template whose braces are not well-formed placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateError {
    /// A `{` with no `}` after it.
    Unclosed,
    /// A `{` inside a placeholder.
    Nested,
    /// A `}` with no `{` before it.
    Unopened,
    /// `{}`.
    Empty,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TemplateError::Unclosed => "has a `{` that is never closed",
            TemplateError::Nested => "has a `{` inside a placeholder",
            TemplateError::Unopened => "has a `}` that closes no placeholder",
            TemplateError::Empty => "has an empty placeholder `{}`",
        })
    }
}

impl Template {
    /// Splits `channel` into text and placeholders.
    pub(crate) fn parse(channel: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut rest = channel;
        while let Some(pos) = rest.find(['{', '}']) {
            if rest[pos..].starts_with('}') {
                return Err(TemplateError::Unopened);
            }
            if pos > 0 {
                segments.push(Segment::Text(rest[..pos].to_owned()));
            }
            let inner = &rest[pos + 1..];
            let end = inner.find(['{', '}']).ok_or(TemplateError::Unclosed)?;
            if inner[end..].starts_with('{') {
                return Err(TemplateError::Nested);
            }
            if end == 0 {
                return Err(TemplateError::Empty);
            }
            segments.push(Segment::Placeholder(inner[..end].to_owned()));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// The placeholders, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Placeholder(p) => Some(p.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// The literal text pieces, in order.
    pub(crate) fn texts(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Text(t) => Some(t.as_str()),
            Segment::Placeholder(_) => None,
        })
    }

    /// Whether the template has any placeholder.
    pub(crate) fn is_keyed(&self) -> bool {
        self.placeholders().next().is_some()
    }

    /// The first two placeholders written side by side (`{a}{b}`), which would let different
    /// keys make the same channel.
    pub(crate) fn adjacent_placeholders(&self) -> Option<(&str, &str)> {
        self.segments.windows(2).find_map(|pair| match pair {
            [Segment::Placeholder(a), Segment::Placeholder(b)] => Some((a.as_str(), b.as_str())),
            _ => None,
        })
    }

    /// The Redis glob pattern matching every filled-in channel: each placeholder becomes `*`.
    pub(crate) fn pattern(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Placeholder(_) => out.push('*'),
            }
        }
        out
    }
}

/// Whether a placeholder is written like a field name or tuple index (no spaces, no format spec).
pub(crate) fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => key.chars().all(|c| c.is_ascii_digit()),
        Some(c) if c == '_' || c.is_alphabetic() => chars.all(|c| c == '_' || c.is_alphanumeric()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Segment {
        Segment::Text(s.to_owned())
    }

    fn key(s: &str) -> Segment {
        Segment::Placeholder(s.to_owned())
    }

    #[test]
    fn fixed_channel_is_one_text() {
        let t = Template::parse("events:user_created").unwrap();
        assert_eq!(t.segments, vec![text("events:user_created")]);
        assert!(!t.is_keyed());
        assert_eq!(t.pattern(), "events:user_created");
    }

    #[test]
    fn placeholders_split_the_text() {
        let t = Template::parse("user:{user_id}:notifications").unwrap();
        assert_eq!(
            t.segments,
            vec![text("user:"), key("user_id"), text(":notifications")]
        );
        assert!(t.is_keyed());
        assert_eq!(t.placeholders().collect::<Vec<_>>(), ["user_id"]);
        assert_eq!(t.texts().collect::<Vec<_>>(), ["user:", ":notifications"]);
        assert_eq!(t.pattern(), "user:*:notifications");
    }

    #[test]
    fn placeholders_at_the_ends_and_side_by_side() {
        let t = Template::parse("{0}:{1}{2}").unwrap();
        assert_eq!(t.segments, vec![key("0"), text(":"), key("1"), key("2")]);
        assert_eq!(t.adjacent_placeholders(), Some(("1", "2")));
        let t = Template::parse("{0}:{1}:{2}").unwrap();
        assert_eq!(t.adjacent_placeholders(), None);
        assert_eq!(t.pattern(), "*:*:*");
        let t = Template::parse("{id}").unwrap();
        assert_eq!(t.segments, vec![key("id")]);
        assert_eq!(t.texts().count(), 0);
    }

    #[test]
    fn malformed_braces() {
        assert_eq!(Template::parse("user:{id"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("user:{"), Err(TemplateError::Unclosed));
        assert_eq!(Template::parse("user:id}"), Err(TemplateError::Unopened));
        assert_eq!(Template::parse("user:{id}}"), Err(TemplateError::Unopened));
        assert_eq!(Template::parse("user:{{id}}"), Err(TemplateError::Nested));
        assert_eq!(Template::parse("user:{}"), Err(TemplateError::Empty));
    }

    #[test]
    fn plain_keys() {
        assert!(is_plain_key("user_id"));
        assert!(is_plain_key("_x1"));
        assert!(is_plain_key("0"));
        assert!(is_plain_key("12"));
        assert!(!is_plain_key(" user_id "));
        assert!(!is_plain_key("id:x"));
        assert!(!is_plain_key("1a"));
        assert!(!is_plain_key("r#type"));
    }
}
