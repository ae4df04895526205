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

    /// Falco's `proc.cmdline` form: `name`, then each argument after
    /// argv[0] preceded by a space. `argv` is NUL-separated, as the kernel
    /// keeps it (and /proc/<pid>/cmdline shows it); bytes that are not
    /// UTF-8 become `?`. Also returns whether anything was cut to fit `N`.
    pub(crate) fn command_line(name: &str, argv: &[u8]) -> (Self, bool) {
        let mut out = InlineStr {
            len: 0,
            bytes: [0u8; N],
        };
        let mut whole = out.push(name);
        let argv = argv.strip_suffix(b"\0").unwrap_or(argv);
        'args: for arg in argv.split(|b| *b == 0).skip(1) {
            whole = whole && out.push(" ");
            for chunk in arg.utf8_chunks() {
                whole = whole && out.push(chunk.valid());
                if !chunk.invalid().is_empty() {
                    whole = whole && out.push("?");
                }
                if !whole {
                    break 'args;
                }
            }
        }
        (out, !whole)
    }

    /// Appends as much of `s` as fits, cut on a character boundary;
    /// whether all of it fit.
    fn push(&mut self, s: &str) -> bool {
        let at = self.len as usize;
        let mut n = s.len().min(N - at);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[at..at + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n as u16;
        n == s.len()
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

    #[test]
    fn command_line_is_the_name_then_the_arguments() {
        let (c, cut) = InlineStr::<64>::command_line("xmrig", b"./xmrig\0-o\0pool:3333\0");
        assert_eq!((c.as_str(), cut), ("xmrig -o pool:3333", false));
        // No argv (a kernel thread, or the process was gone): the name.
        let (c, cut) = InlineStr::<64>::command_line("kworker", b"");
        assert_eq!((c.as_str(), cut), ("kworker", false));
        // Not UTF-8, and an argv cut inside its last argument.
        let (c, _) = InlineStr::<64>::command_line("sh", b"sh\0a\xffb\0-c");
        assert_eq!(c.as_str(), "sh a?b -c");
        let (c, cut) = InlineStr::<8>::command_line("sh", b"sh\0abcdefgh\0x\0");
        assert_eq!((c.as_str(), cut), ("sh abcde", true));
        // Cut on a character boundary.
        let (c, cut) = InlineStr::<5>::command_line("sh", "sh\0\u{e9}\u{e9}".as_bytes());
        assert_eq!((c.as_str(), cut), ("sh \u{e9}", true));
    }
}
