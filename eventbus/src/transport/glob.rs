//! Redis-compatible glob matching for channel patterns.

/// Whether `text` matches the glob `pattern` as Redis matches `PSUBSCRIBE` patterns:
/// `*` any run, `?` one character, `[abc]`, `[^a]`, `[a-z]` classes, `\` escapes.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    matches(pattern.as_bytes(), text.as_bytes())
}

fn matches(mut p: &[u8], mut s: &[u8]) -> bool {
    // Positions to return to when a `*` has to swallow one more byte.
    let mut star: Option<(&[u8], &[u8])> = None;
    loop {
        match p.split_first() {
            Some((b'*', prest)) => {
                let rest = skip_stars(prest);
                if rest.is_empty() {
                    return true;
                }
                star = Some((rest, s));
                p = rest;
                continue;
            }
            Some((&pc, prest)) => {
                if let Some(rest) = match_one(pc, prest, s) {
                    p = rest;
                    s = &s[1..];
                    continue;
                }
            }
            None if s.is_empty() => return true,
            None => {}
        }
        // Mismatch: let the last star take one more byte.
        match star {
            Some((sp, ss)) if !ss.is_empty() => {
                let ss = &ss[1..];
                star = Some((sp, ss));
                p = sp;
                s = ss;
            }
            _ => return false,
        }
    }
}

/// The pattern after a run of stars, collapsed into the one before it.
#[inline]
fn skip_stars(mut p: &[u8]) -> &[u8] {
    while let [b'*', rest @ ..] = p {
        p = rest;
    }
    p
}

/// Matches the first byte of `s` against the pattern token starting with `pc` (not a `*`),
/// followed by `prest`: the pattern after that token when it matches, `None` when it does not
/// or `s` is empty.
#[inline]
fn match_one<'p>(pc: u8, prest: &'p [u8], s: &[u8]) -> Option<&'p [u8]> {
    let &c = s.first()?;
    match pc {
        b'?' => Some(prest),
        b'[' => match class(prest, c) {
            (true, rest) => Some(rest),
            (false, _) => None,
        },
        b'\\' => match prest.split_first() {
            Some((&escaped, rest)) => (escaped == c).then_some(rest),
            // A trailing backslash matches itself.
            None => (c == b'\\').then_some(prest),
        },
        _ => (pc == c).then_some(prest),
    }
}

/// Matches `c` against a class body starting after `[`; returns the result and the pattern
/// after the closing `]`. As in Redis, an unterminated class runs to the end of the pattern.
fn class(mut p: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut hit = false;
    loop {
        match p {
            [] => return (hit != negate, &[]),
            [b']', rest @ ..] => return (hit != negate, rest),
            [b'\\', x, rest @ ..] => {
                hit |= *x == c;
                p = rest;
            }
            [a, b'-', b, rest @ ..] => {
                let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                hit |= (lo..=hi).contains(&c);
                p = rest;
            }
            [x, rest @ ..] => {
                hit |= *x == c;
                p = rest;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn one_of_each() {
        assert!(m("events:*", "events:user_created"));
        assert!(m("user:?:n", "user:7:n"));
        assert!(!m("user:[0-3]", "user:5"));
    }

    #[test]
    fn literals_and_stars() {
        assert!(m("events:user_created", "events:user_created"));
        assert!(!m("events:user_created", "events:user_create"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("events:*", "events:"));
        assert!(m("user:*:notifications", "user:42:notifications"));
        assert!(m("user:*:notifications", "user:4:2:notifications"));
        assert!(!m("user:*:notifications", "user:42:notification"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("**x", "yyx"));
    }

    #[test]
    fn question_marks_and_classes() {
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"));
        assert!(!m("h[a-b]llo", "hcllo"));
    }

    #[test]
    fn classes_as_redis_reads_them() {
        // An unterminated class runs to the end of the pattern.
        assert!(m("a[bc", "ab"));
        assert!(!m("a[bc", "a[bc"));
        // In `[a-]x` the `]` ends the range `a-]`, not the class, which then runs on.
        assert!(m("[a-]x", "]"));
        assert!(m("[a-]x", "x"));
        assert!(m("[a-]x", "_"));
        assert!(!m("[a-]x", "]x"));
    }

    #[test]
    fn escapes() {
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axb"));
        assert!(m(r"a\?", "a?"));
    }
}
