//! `return_to`: where the browser goes after a hand-off. Checked the same way
//! on issue and on accept; only a plain path on the receiving site, under one
//! of its `return_paths`, is accepted. Everything that a browser or a proxy
//! might read as another host or another path is refused, never "repaired".

use std::fmt;

/// Longest accepted `return_to`.
pub const MAX_RETURN_TO_LEN: usize = 2048;

/// Why a `return_to` was refused (the reason is for people; the code is `return_to_invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnToError {
    Empty,
    TooLong,
    NotAPath,
    SchemeRelative,
    Backslash,
    ControlCharacter,
    NonAscii,
    BadEscape,
    EncodedSeparator,
    DotSegment,
    NotAllowed,
}

impl fmt::Display for ReturnToError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "return_to is empty",
            Self::TooLong => "return_to is too long",
            Self::NotAPath => "return_to must be a path starting with /",
            Self::SchemeRelative => "return_to must not start with //",
            Self::Backslash => "return_to must not contain a backslash",
            Self::ControlCharacter => "return_to must not contain control characters or spaces",
            Self::NonAscii => "return_to must be ASCII (percent-encode other characters)",
            Self::BadEscape => "return_to has a broken percent escape",
            Self::EncodedSeparator => {
                "return_to must not percent-encode slashes, backslashes, dots, percent signs, or a ; in the path"
            }
            Self::DotSegment => "return_to must not contain . or .. segments or a ; in the path",
            Self::NotAllowed => "return_to is not under a path this site allows",
        })
    }
}

/// Checks `raw` against the site's `return_paths` (prefixes matched segment
/// by segment: `/app` allows `/app` and `/app/x`, not `/apple`). A query is
/// allowed; a fragment is not.
pub fn validate_return_to<'a>(
    raw: &'a str,
    return_paths: &[String],
) -> Result<&'a str, ReturnToError> {
    if raw.is_empty() {
        return Err(ReturnToError::Empty);
    }
    if raw.len() > MAX_RETURN_TO_LEN {
        return Err(ReturnToError::TooLong);
    }
    check_bytes(raw)?;
    if !raw.starts_with('/') {
        return Err(ReturnToError::NotAPath);
    }
    if raw.starts_with("//") {
        return Err(ReturnToError::SchemeRelative);
    }
    check_escapes(raw)?;
    let path = raw.split_once('?').map_or(raw, |(path, _)| path);
    // `..;` is a dot segment to some servers (Tomcat, Spring): refuse `;` in the path.
    if path.contains(';')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
    {
        return Err(ReturnToError::DotSegment);
    }
    if return_paths
        .iter()
        .any(|prefix| path_is_under(path, prefix))
    {
        Ok(raw)
    } else {
        Err(ReturnToError::NotAllowed)
    }
}

/// Only printable ASCII, no backslash, no fragment: nothing a browser or a
/// proxy could read as another host or another path.
fn check_bytes(text: &str) -> Result<(), ReturnToError> {
    for byte in text.bytes() {
        match byte {
            b'\\' => return Err(ReturnToError::Backslash),
            0..=0x20 | 0x7f => return Err(ReturnToError::ControlCharacter),
            0x80.. => return Err(ReturnToError::NonAscii),
            b'#' => return Err(ReturnToError::NotAPath),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses escapes that could turn into a separator or a second decoding
/// round: `%2f`, `%5c`, `%2e`, `%25`, controls; in the path also `%3b`,
/// since a server or proxy that decodes once reads `..%3b` as `..;`,
/// which Tomcat and Spring take for `..`; and broken escapes.
fn check_escapes(raw: &str) -> Result<(), ReturnToError> {
    let bytes = raw.as_bytes();
    let mut in_path = true;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'?' {
            in_path = false;
        }
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(ReturnToError::BadEscape)?;
            let text = std::str::from_utf8(hex).map_err(|_| ReturnToError::BadEscape)?;
            let value = u8::from_str_radix(text, 16).map_err(|_| ReturnToError::BadEscape)?;
            if matches!(value, b'/' | b'\\' | b'.' | b'%') || (in_path && value == b';') {
                return Err(ReturnToError::EncodedSeparator);
            }
            if value < 0x20 || value == 0x7f {
                return Err(ReturnToError::ControlCharacter);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn path_is_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true; // "/" allows every path
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn accepts_paths_under_an_allowed_prefix() {
        let allowed = paths(&["/app", "/cart/"]);
        for ok in [
            "/app",
            "/app/",
            "/app/x?y=1&z=%20",
            "/cart",
            "/cart/items",
            "/app/caf%C3%A9",
            "/app/x?filter=a%3Bb",
        ] {
            assert_eq!(validate_return_to(ok, &allowed), Ok(ok), "{ok}");
        }
        for no in ["/apple", "/", "/other", "/ap"] {
            assert_eq!(
                validate_return_to(no, &allowed),
                Err(ReturnToError::NotAllowed),
                "{no}"
            );
        }
        assert!(validate_return_to("/anything/at/all", &paths(&["/"])).is_ok());
    }

    #[test]
    fn refuses_every_way_out_of_the_site() {
        let all = paths(&["/"]);
        let attacks = [
            ("https://evil.example/", ReturnToError::NotAPath),
            ("//evil.example/", ReturnToError::SchemeRelative),
            ("/\\evil.example", ReturnToError::Backslash),
            ("\\\\evil.example", ReturnToError::Backslash),
            ("/%2f%2fevil.example", ReturnToError::EncodedSeparator),
            ("/%2F/evil.example", ReturnToError::EncodedSeparator),
            ("/%5cevil.example", ReturnToError::EncodedSeparator),
            ("/%2e%2e/admin", ReturnToError::EncodedSeparator),
            ("/%252f%252fevil", ReturnToError::EncodedSeparator),
            ("/../admin", ReturnToError::DotSegment),
            ("/a/./b", ReturnToError::DotSegment),
            ("/app/..;/admin", ReturnToError::DotSegment),
            ("/app;x=1", ReturnToError::DotSegment),
            ("/app/..%3B/admin", ReturnToError::EncodedSeparator),
            ("/app/..%3b/admin", ReturnToError::EncodedSeparator),
            ("/\t/evil.example", ReturnToError::ControlCharacter),
            ("/\n/evil.example", ReturnToError::ControlCharacter),
            ("/\r\nSet-Cookie:x", ReturnToError::ControlCharacter),
            ("/%0d%0aSet-Cookie:x", ReturnToError::ControlCharacter),
            ("/ /evil", ReturnToError::ControlCharacter),
            ("/\u{0}", ReturnToError::ControlCharacter),
            ("javascript:alert(1)", ReturnToError::NotAPath),
            ("data:text/html,x", ReturnToError::NotAPath),
            ("JaVaScRiPt:alert(1)", ReturnToError::NotAPath),
            ("/é", ReturnToError::NonAscii),
            ("/\u{ff0f}\u{ff0f}evil", ReturnToError::NonAscii),
            ("/%", ReturnToError::BadEscape),
            ("/%zz", ReturnToError::BadEscape),
            ("/x#frag", ReturnToError::NotAPath),
            ("", ReturnToError::Empty),
        ];
        for (attack, expected) in attacks {
            assert_eq!(
                validate_return_to(attack, &all),
                Err(expected),
                "{attack:?}"
            );
        }
        assert_eq!(
            validate_return_to(&format!("/{}", "a".repeat(3000)), &all),
            Err(ReturnToError::TooLong)
        );
    }
}

/// A same-origin target for a site's own redirects (such as "back to
/// `/bridge/issue?…` after login"): the path is checked like `return_to`
/// against `/`; the query may carry percent-encoded URLs but no raw control
/// characters, backslashes, non-ASCII or fragment.
pub fn validate_local_target(raw: &str) -> Result<&str, ReturnToError> {
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    validate_return_to(path, &["/".to_owned()])?;
    check_bytes(query)?;
    if raw.len() > MAX_RETURN_TO_LEN {
        return Err(ReturnToError::TooLong);
    }
    Ok(raw)
}

#[cfg(test)]
mod local_target_tests {
    use super::*;

    #[test]
    fn allows_encoded_urls_in_the_query_only() {
        let back = "/bridge/issue?to=http%3A%2F%2Fshop.localhost%3A8080&return_to=%2F";
        assert_eq!(validate_local_target(back), Ok(back));
        for bad in [
            "//evil.example/?x",
            "/%2f%2fevil?x",
            "https://evil.example",
            "/?a=\n",
        ] {
            assert!(validate_local_target(bad).is_err(), "{bad:?}");
        }
    }
}
