//! A fixed-capacity string stored inline, so events need no allocation.

use std::fmt;

/// Up to `N` bytes of text, stored inline (events carry paths and command
/// names without allocating).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InlineStr<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    /// Takes bytes up to the first NUL (or `N`), keeping the longest valid
    /// UTF-8 prefix.
    pub fn from_c_bytes(raw: &[u8]) -> Self {
        let raw = &raw[..raw.len().min(N)];
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let valid = match std::str::from_utf8(&raw[..end]) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        let mut bytes = [0u8; N];
        bytes[..valid].copy_from_slice(&raw[..valid]);
        InlineStr {
            len: valid as u16,
            bytes,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: constructed from a checked UTF-8 prefix only.
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len as usize]) }
    }
}

impl<const N: usize> std::ops::Deref for InlineStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::InlineStr;

    #[test]
    fn stops_at_nul_and_bad_utf8() {
        assert_eq!(
            InlineStr::<16>::from_c_bytes(b"xmrig\0junk").as_str(),
            "xmrig"
        );
        assert_eq!(InlineStr::<16>::from_c_bytes(b"ab\xffcd").as_str(), "ab");
        assert_eq!(InlineStr::<4>::from_c_bytes(b"abcdef").as_str(), "abcd");
        assert_eq!(InlineStr::<4>::from_c_bytes(b"").as_str(), "");
    }
}
