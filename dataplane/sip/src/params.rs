//! `;name=value` parameter lists, as they follow URIs and header values.

use crate::text::{self, find_unnested, skip_lws, trim_lws};

/// One parameter. `value` keeps its quotes when quoted; see [`Param::unquoted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter name as written (names compare case-insensitively).
    pub name: &'a [u8],
    /// The value after `=`, if any.
    pub value: Option<&'a [u8]>,
}

impl<'a> Param<'a> {
    /// The value with surrounding double quotes removed (escapes are left as written).
    pub fn unquoted(&self) -> Option<&'a [u8]> {
        self.value.map(unquote)
    }
}

/// Strips one pair of surrounding double quotes, if present.
pub(crate) fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// A parameter list, parsed lazily from the bytes after the first `;` (without it).
/// Header parameters may have linear whitespace around `;` and `=` and quoted values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    /// Wraps raw parameter text (everything after the first `;`).
    pub const fn new(raw: &'a [u8]) -> Self {
        Self { raw }
    }

    /// The raw text, as it appears in the message.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// True when there are no parameters at all.
    pub fn is_empty(&self) -> bool {
        trim_lws(self.raw).is_empty()
    }

    /// The first parameter named `name` (case-insensitive): `Some(None)` when present without a
    /// value.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// True when a parameter named `name` is present.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// Iterates the parameters in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            raw: self.raw,
            pos: 0,
        }
    }

    /// Checks the header-parameter grammar — every name a token, every value a token, a
    /// quoted string or an IP reference (`gen-value`) — and hands each parameter to `visit`
    /// in the same pass. Typed header parsers call this once, capturing the parameters they
    /// serve (branch, tag, …), so later lookups can neither fail nor rescan.
    pub(crate) fn scan(&self, mut visit: impl FnMut(Param<'a>)) -> bool {
        if self.raw.is_empty() {
            return true;
        }
        let mut pos = 0;
        loop {
            let end = find_unnested(self.raw, pos, b';');
            let seg = &self.raw[pos..end.unwrap_or(self.raw.len())];
            let (name, value) = split_param(seg);
            if !check_segment(name, value) {
                return false;
            }
            visit(Param { name, value });
            match end {
                Some(e) => pos = e + 1,
                None => return true,
            }
        }
    }

    pub(crate) fn check_generic(&self) -> bool {
        self.scan(|_| {})
    }
}

fn check_segment(name: &[u8], value: Option<&[u8]>) -> bool {
    if !text::all_tokens(name) {
        return false;
    }
    match value {
        None => true,
        Some(v @ [b'"', ..]) => text::quoted_string_end(v, 0) == Some(v.len()),
        Some(v) => {
            !v.is_empty()
                && v.iter()
                    .all(|&c| text::is_token(c) || matches!(c, b':' | b'[' | b']'))
        }
    }
}

fn split_param(seg: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'=', seg) {
        Some(eq) if !seg[..eq].contains(&b'"') => {
            (trim_lws(&seg[..eq]), Some(trim_lws(&seg[eq + 1..])))
        }
        _ => (trim_lws(seg), None),
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        loop {
            if self.pos > self.raw.len() || skip_lws(self.raw, self.pos) >= self.raw.len() {
                return None;
            }
            let end = find_unnested(self.raw, self.pos, b';').unwrap_or(self.raw.len());
            let seg = &self.raw[self.pos..end];
            self.pos = end + 1;
            let (name, value) = split_param(seg);
            if !name.is_empty() {
                return Some(Param { name, value });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lws_around_separators() {
        let p = Params::new(b" branch  =\r\n z9hG4bK30239 ; rport ; q = 0.33");
        assert!(p.check_generic());
        assert_eq!(p.get(b"BRANCH"), Some(Some(&b"z9hG4bK30239"[..])));
        assert_eq!(p.get(b"rport"), Some(None));
        assert_eq!(p.get(b"q"), Some(Some(&b"0.33"[..])));
        assert_eq!(p.get(b"x"), None);
    }

    #[test]
    fn empty_segments_fail_the_check() {
        assert!(!Params::new(b";").check_generic());
        assert!(!Params::new(b"a;;b").check_generic());
        assert!(Params::new(br#"x="a;b";y"#).check_generic());
        assert_eq!(Params::new(br#"x="a;b";y"#).iter().count(), 2);
    }
}
