//! Byte classes and the small scanning steps of RFC 3261 §25 grammar.
//!
//! Header values handed to the typed parsers keep their line folding (a CRLF followed by
//! whitespace), so every "skip whitespace" here treats CR and LF as whitespace too: the
//! structural parser has already proved that a CRLF inside a value is a fold.

/// Character class bits, looked up in one table so the hot loops do a single load per byte.
const TOKEN: u8 = 1;
const WORD: u8 = 2;
const WSP: u8 = 4;
const DIGIT: u8 = 8;
const HEX: u8 = 16;
/// unreserved / escaped-start / user-unreserved / param-unreserved / hnv-unreserved, the union of
/// every character that may appear in a SIP URI outside the host part.
const URIC: u8 = 32;
const ALPHA: u8 = 64;

static CLASSES: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let c = byte as u8;
        let mut bits = 0;
        let alnum = c.is_ascii_alphanumeric();
        if c.is_ascii_alphabetic() {
            bits |= ALPHA;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            bits |= TOKEN | WORD;
        }
        if matches!(
            c,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        ) {
            bits |= WORD;
        }
        if c == b' ' || c == b'\t' {
            bits |= WSP;
        }
        if c.is_ascii_digit() {
            bits |= DIGIT;
        }
        if c.is_ascii_hexdigit() {
            bits |= HEX;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'~'
                    | b'*'
                    | b'\''
                    | b'('
                    | b')'
                    | b'%'
                    | b'&'
                    | b'='
                    | b'+'
                    | b'$'
                    | b','
                    | b';'
                    | b'?'
                    | b'/'
                    | b'['
                    | b']'
                    | b':'
            )
        {
            bits |= URIC;
        }
        table[byte] = bits;
        byte += 1;
    }
    table
}

#[inline]
pub(crate) fn is_token(c: u8) -> bool {
    CLASSES[c as usize] & TOKEN != 0
}

#[inline]
pub(crate) fn is_word(c: u8) -> bool {
    CLASSES[c as usize] & WORD != 0
}

#[inline]
pub(crate) fn is_wsp(c: u8) -> bool {
    CLASSES[c as usize] & WSP != 0
}

/// Whitespace inside a header value: SP, HT and the CR LF of a fold.
#[inline]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub(crate) fn is_digit(c: u8) -> bool {
    CLASSES[c as usize] & DIGIT != 0
}

#[inline]
pub(crate) fn is_alpha(c: u8) -> bool {
    CLASSES[c as usize] & ALPHA != 0
}

#[inline]
pub(crate) fn is_uric(c: u8) -> bool {
    CLASSES[c as usize] & URIC != 0
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    if CLASSES[c as usize] & HEX == 0 {
        return None;
    }
    Some(match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    })
}

pub(crate) fn all_tokens(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token(c))
}

/// Index of the first byte at or after `from` that is not linear whitespace.
#[inline]
pub(crate) fn skip_lws(s: &[u8], mut from: usize) -> usize {
    while from < s.len() && is_lws(s[from]) {
        from += 1;
    }
    from
}

/// `s` without leading and trailing linear whitespace.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let start = skip_lws(s, 0);
    let mut end = s.len();
    while end > start && is_lws(s[end - 1]) {
        end -= 1;
    }
    &s[start..end]
}

/// Index just past the token that starts at `from` (equal to `from` when there is none).
#[inline]
pub(crate) fn token_end(s: &[u8], mut from: usize) -> usize {
    while from < s.len() && is_token(s[from]) {
        from += 1;
    }
    from
}

/// Index just past the closing quote of the quoted string whose opening quote is at `open`,
/// honouring `\` escapes; `None` when the string never closes.
pub(crate) fn quoted_string_end(s: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Finds `needle` in `s` at nesting depth zero: outside quoted strings and angle brackets.
/// This is how list headers split on commas and how parameters split on semicolons.
pub(crate) fn find_unnested(s: &[u8], from: usize, needle: u8) -> Option<usize> {
    // Jump between the three bytes that matter with memchr rather than classifying each
    // byte: this runs on every list header and parameter lookup.
    let mut i = from;
    while i < s.len() {
        let hit = i + memchr::memchr3(needle, b'"', b'<', &s[i..])?;
        match s[hit] {
            c if c == needle => return Some(hit),
            b'"' => i = quoted_string_end(s, hit)?,
            _ => i = hit + 1 + memchr::memchr(b'>', &s[hit + 1..])? + 1,
        }
    }
    None
}

/// Parses a decimal number of at most `max`, allowing leading zeros (RFC 4475 `wsinv`).
pub(crate) fn parse_decimal(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &c in s {
        if !is_digit(c) {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if value > max {
            return None;
        }
    }
    Some(value)
}

/// Compares two byte strings that may contain `%HH` escapes, as their unescaped octets.
/// `case_insensitive` folds ASCII case after unescaping (host parts and parameters).
pub(crate) fn eq_unescaped(a: &[u8], b: &[u8], case_insensitive: bool) -> bool {
    let mut left = Unescape::new(a);
    let mut right = Unescape::new(b);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) => {
                let same = if case_insensitive {
                    x.eq_ignore_ascii_case(&y)
                } else {
                    x == y
                };
                if !same {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Iterates the octets of a string with its `%HH` escapes decoded once (never recursively:
/// RFC 4475 `esc01`). A `%` not followed by two hex digits stands for itself (`esc02`).
pub(crate) struct Unescape<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Unescape<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        Self { s, i: 0 }
    }
}

impl Iterator for Unescape<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        if c == b'%' {
            if let (Some(&h), Some(&l)) = (self.s.get(self.i + 1), self.s.get(self.i + 2)) {
                if let (Some(h), Some(l)) = (hex_value(h), hex_value(l)) {
                    self.i += 3;
                    return Some(h << 4 | l);
                }
            }
        }
        self.i += 1;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_decodes_once() {
        let out: Vec<u8> = Unescape::new(b"a%2541%41%zz%").collect();
        assert_eq!(out, b"a%41A%zz%");
    }

    #[test]
    fn unnested_skips_quotes_and_brackets() {
        let s = br#""a,b" <sip:x;y,z>, next"#;
        assert_eq!(find_unnested(s, 0, b','), Some(17));
        assert_eq!(find_unnested(br#""open"#, 0, b','), None);
    }

    #[test]
    fn decimal_bounds() {
        assert_eq!(parse_decimal(b"0068", 255), Some(68));
        assert_eq!(parse_decimal(b"256", 255), None);
        assert_eq!(
            parse_decimal(b"99999999999999999999999", u64::from(u32::MAX)),
            None
        );
        assert_eq!(parse_decimal(b"-1", 255), None);
    }
}
