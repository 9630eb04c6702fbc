//! Path normalization: the one path the engine routes by and forwards, so that a
//! path cannot name one environment and resolve to another (`/stg/../prod/x`).
//!
//! The engine normalizes `:path` itself (without its query) before choosing the
//! environment and the route, and is the one normalizer wherever Switchyard
//! renders or serves the HttpConnectionManager (Envoy's `normalize_path` and
//! `merge_slashes` are off there, so `switchyard explain` tells what the stack
//! does); in Istio or a user's own HCM it also holds whatever Envoy did first.
//! The result is what the upstream receives. In order:
//!
//! 1. **Percent-decoding of unreserved characters** (RFC 3986 §2.3: ALPHA DIGIT
//!    `-` `.` `_` `~`), so `%2e%2E` is `..` and `/d%65v` is `/dev`. Every other
//!    escape stays as written (case included): `%20`, `%3B`, `%C3%A9`.
//! 2. **Dot-segment removal** (RFC 3986 §5.2.4) over the `/`-separated segments,
//!    empty ones included, as Envoy's `normalize_path` and the WHATWG URL parser
//!    do: `/a/./b/../c` → `/a/c`, `/a/b/..` → `/a/`, `/a//../b` → `/a/b`.
//! 3. **Merged slashes**: `//` → `/` (Envoy's `merge_slashes`, after step 2 as
//!    in Envoy).
//!
//! Refused with [`PathError`] (400 `invalid_path`), because the safe answer to
//! ambiguous input is no answer:
//! - a path not starting with `/`;
//! - `..` climbing above the root (`/..`, `/dev/../..`): RFC 3986 would clamp it
//!   at the root, but no honest client sends it;
//! - an encoded `/` or `\` (`%2F`, `%5C`, any case): decoding would create a new
//!   segment boundary (a different environment), not decoding leaves servers
//!   that decode later to disagree with us;
//! - a raw `\` (some servers treat it as `/`);
//! - a dot segment with path parameters, `.;x` or `..;x` (also `..%3B`):
//!   Tomcat and others strip `;…` and then see `..`;
//! - invalid escapes (`%zz`, `%4`, a trailing `%`);
//! - escapes that decode to a control character (`%00`–`%1F`, `%7F`) or to bytes
//!   that are not well-formed UTF-8 (overlong `%C0%AE`, `%E0%80%AE`, surrogates,
//!   truncated sequences): lenient decoders turn some of them into `.` or `/`;
//! - raw control characters or spaces, and a raw `#` (a fragment is never sent
//!   to a server; one in `:path` is an attack or a broken client).
//!
//! `;` parameters on other segments are kept (`/a;jsessionid=1/b`): they are
//! part of the segment, so `/dev;x` is not environment `dev` and `/hello;x` does
//! not match route `/hello`. Raw non-ASCII characters are kept as they are.
//!
//! Cost: one linear scan that borrows ([`Cow::Borrowed`]) when the path is
//! already normal — the common case, no allocation; otherwise one more linear
//! pass over a segment stack. No recursion, so 10,000 segments are no problem.
//! The result is a fixed point: normalizing it again changes nothing.

use std::borrow::Cow;

/// Why a path is refused (400 `invalid_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    AboveRoot,
    EncodedSlash,
    Backslash,
    DotWithParameters,
    InvalidEscape,
    ControlCharacter,
    InvalidUtf8,
    Fragment,
}

impl PathError {
    /// A message naming only what the client sent.
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the path must start with '/'",
            PathError::AboveRoot => "the path climbs above the root with '..'",
            PathError::EncodedSlash => "the path contains an encoded '/' or '\\'",
            PathError::Backslash => "the path contains a '\\'",
            PathError::DotWithParameters => "the path has a dot segment with ';' parameters",
            PathError::InvalidEscape => "the path has an invalid percent escape",
            PathError::ControlCharacter => "the path contains a control character or space",
            PathError::InvalidUtf8 => "the path's percent escapes are not valid UTF-8",
            PathError::Fragment => "the path contains a '#'",
        }
    }
}

/// Normalizes a path (no query string). Borrows when it is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if scan(path)? {
        rebuild(path).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(path))
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte `%XY` at `bytes[i]` encodes, if `bytes[i..]` starts with a valid escape.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let hi = hex(*bytes.get(i + 1)?)?;
    let lo = hex(*bytes.get(i + 2)?)?;
    Some(hi << 4 | lo)
}

/// Well-formedness of the UTF-8 that percent escapes spell (Unicode Table 3-7):
/// how many continuation bytes are still due, and the range the next one must
/// be in (narrower after E0, ED, F0, F4: no overlongs, surrogates, > U+10FFFF).
#[derive(Default)]
struct Utf8 {
    due: u8,
    lo: u8,
    hi: u8,
}

impl Utf8 {
    fn escaped(&mut self, b: u8) -> Result<(), PathError> {
        if self.due > 0 {
            if b < self.lo || b > self.hi {
                return Err(PathError::InvalidUtf8);
            }
            self.due -= 1;
            (self.lo, self.hi) = (0x80, 0xBF);
            return Ok(());
        }
        let (due, lo, hi) = match b {
            0x00..=0x7F => return Ok(()),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE | 0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return Err(PathError::InvalidUtf8),
        };
        *self = Utf8 { due, lo, hi };
        Ok(())
    }

    /// Anything but an escape: a multi-byte sequence must not be interrupted.
    fn raw(&self) -> Result<(), PathError> {
        if self.due > 0 {
            Err(PathError::InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// One character of a segment as the normalizer sees it: a literal byte (raw, or
/// a decoded unreserved escape), or an escape that stays encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Byte(u8),
    Escaped(u8),
}

/// The units of a segment, with their width in the input.
fn units(seg: &str) -> impl Iterator<Item = (Unit, usize)> + '_ {
    let bytes = seg.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        let (unit, width) = match (b, escape_at(bytes, i)) {
            (b'%', Some(v)) if is_unreserved(v) => (Unit::Byte(v), 3),
            (b'%', Some(v)) => (Unit::Escaped(v), 3),
            _ => (Unit::Byte(b), 1),
        };
        i += width;
        Some((unit, width))
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Dots {
    None,
    One,
    Two,
    WithParameters,
}

/// Whether a segment is `.` or `..` once unreserved escapes are decoded, or one
/// of them followed by `;` parameters (raw or `%3B`). Reads at most 3 units.
fn dots(seg: &str) -> Dots {
    // Most segments start with neither `.` nor an escape: not a dot segment.
    if !matches!(seg.as_bytes().first(), Some(b'.' | b'%')) {
        return Dots::None;
    }
    let mut it = units(seg).map(|(u, _)| u);
    let is_semi = |u: Option<Unit>| matches!(u, Some(Unit::Byte(b';') | Unit::Escaped(b';')));
    if it.next() != Some(Unit::Byte(b'.')) {
        return Dots::None;
    }
    match it.next() {
        None => Dots::One,
        u if is_semi(u) => Dots::WithParameters,
        Some(Unit::Byte(b'.')) => match it.next() {
            None => Dots::Two,
            u if is_semi(u) => Dots::WithParameters,
            _ => Dots::None,
        },
        _ => Dots::None,
    }
}

/// Validates the whole path; says whether it must be rebuilt (an escape to
/// decode, a dot segment, an empty segment before the last).
fn scan(path: &str) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut utf8 = Utf8::default();
    let mut rebuild = false;
    let mut seg_start = 1;
    let mut i = 1;
    loop {
        let Some(&b) = bytes.get(i) else {
            utf8.raw()?;
            check_segment(&path[seg_start..], true, &mut rebuild)?;
            return Ok(rebuild);
        };
        match b {
            b'%' => {
                let v = escape_at(bytes, i).ok_or(PathError::InvalidEscape)?;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    0x00..=0x1F | 0x7F => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(v) => rebuild = true,
                    _ => {}
                }
                utf8.escaped(v)?;
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::Fragment),
            0x00..=0x20 | 0x7F => return Err(PathError::ControlCharacter),
            b'/' => {
                utf8.raw()?;
                check_segment(&path[seg_start..i], false, &mut rebuild)?;
                seg_start = i + 1;
            }
            _ => utf8.raw()?,
        }
        i += 1;
    }
}

fn check_segment(seg: &str, last: bool, rebuild: &mut bool) -> Result<(), PathError> {
    match dots(seg) {
        Dots::WithParameters => return Err(PathError::DotWithParameters),
        Dots::One | Dots::Two => *rebuild = true,
        Dots::None => {}
    }
    if seg.is_empty() && !last {
        *rebuild = true;
    }
    Ok(())
}

/// A segment with its unreserved escapes decoded (the path was scanned: valid).
fn decode_unreserved(seg: &str) -> Cow<'_, str> {
    if !units(seg).any(|(u, w)| w == 3 && matches!(u, Unit::Byte(_))) {
        return Cow::Borrowed(seg);
    }
    let mut out = String::with_capacity(seg.len());
    let (mut at, mut copied) = (0, 0);
    for (unit, width) in units(seg) {
        if let (Unit::Byte(b), 3) = (unit, width) {
            // `at` and `at + 3` are ASCII positions: char boundaries.
            out.push_str(seg.get(copied..at).unwrap_or_default());
            out.push(char::from(b));
            copied = at + 3;
        }
        at += width;
    }
    out.push_str(seg.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Steps 1–3 on a scanned path, with a stack of segments (linear, no recursion).
fn rebuild(path: &str) -> Result<String, PathError> {
    let rest = path.get(1..).unwrap_or_default();
    let count = rest.split('/').count();
    let mut stack: Vec<Cow<'_, str>> = Vec::with_capacity(count);
    for (n, seg) in rest.split('/').enumerate() {
        let last = n + 1 == count;
        match dots(seg) {
            Dots::One => {}
            Dots::Two => {
                if stack.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            // Refused by the scan already.
            Dots::WithParameters => return Err(PathError::DotWithParameters),
            Dots::None => {
                stack.push(decode_unreserved(seg));
                continue;
            }
        }
        // A dot segment at the end leaves the directory: `/a/b/..` → `/a/`.
        if last {
            stack.push(Cow::Borrowed(""));
        }
    }
    let mut out = String::with_capacity(path.len());
    let top = stack.len().saturating_sub(1);
    for (n, seg) in stack.iter().enumerate() {
        // Merged slashes: an empty segment survives only as the trailing slash.
        if seg.is_empty() && n != top {
            continue;
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/dev",
            "/dev/",
            "/dev/hello",
            "/dev/hello/x.y/..z/...",
            "/a;jsessionid=1/b",
            "/caf%C3%A9",
            "/a%20b%3Bc%25",
            "/ü/x",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn rfc_3986_and_merged_slashes() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("//", "/"),
            ("/a//b///c", "/a/b/c"),
            ("/a//../b", "/a/b"),
            ("/a/b//", "/a/b/"),
            ("/x/%2e%2E/y", "/y"),
            ("/d%65v/%7Euser/%41", "/dev/~user/A"),
            ("/%2e", "/"),
            ("/.../a", "/.../a"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refusals() {
        use PathError::*;
        let cases = [
            ("", NotAbsolute),
            ("dev/x", NotAbsolute),
            ("/..", AboveRoot),
            ("/a/../..", AboveRoot),
            ("/%2e%2e/x", AboveRoot),
            ("/%2e%2E/", AboveRoot),
            ("/a%2fb", EncodedSlash),
            ("/a%5Cb", EncodedSlash),
            ("/a\\b", Backslash),
            ("/..;/x", DotWithParameters),
            ("/a/.;x/b", DotWithParameters),
            ("/a/..%3b/b", DotWithParameters),
            ("/a/%2e%2e;/b", DotWithParameters),
            ("/a%zz", InvalidEscape),
            ("/a%", InvalidEscape),
            ("/a%4", InvalidEscape),
            ("/a%00", ControlCharacter),
            ("/a%0A", ControlCharacter),
            ("/a b", ControlCharacter),
            ("/%c0%ae", InvalidUtf8),
            ("/%e0%80%ae", InvalidUtf8),
            ("/%ed%a0%80", InvalidUtf8),
            ("/%c3", InvalidUtf8),
            ("/%c3/%a9", InvalidUtf8),
            ("/%ff", InvalidUtf8),
            ("/a#b", Fragment),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
    }
}
