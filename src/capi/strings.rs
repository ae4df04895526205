//! Text across the boundary: checked reads of C strings and copies into
//! caller-owned buffers (NUL-terminated, size reported when too small).

use std::{
    ffi::{c_char, CStr, OsStr},
    os::unix::ffi::OsStrExt,
    path::Path,
};

use super::result::{mg_result::*, Failure};

/// A NUL-terminated argument that must be UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn utf8_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    utf8(bytes, what)
}

/// A text argument given as pointer and length (no NUL needed).
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that outlive `'a`.
pub(crate) unsafe fn utf8_text<'a>(
    p: *const c_char,
    len: usize,
    what: &str,
) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "`{what}` length {len} is not a valid size"
        )));
    }
    // SAFETY: non-NULL, `len` readable bytes per the caller's contract.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    utf8(bytes, what)
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, Failure> {
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            MG_ERR_INVALID_UTF8,
            format!(
                "`{what}` is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// A path argument: any bytes but NUL, as Linux paths are (no UTF-8 needed).
///
/// # Safety
/// As for [`utf8_arg`].
pub(crate) unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> Result<&'a Path, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid(format!("`{what}` must not be empty")));
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// An array argument of `count` elements (NULL allowed only when empty).
///
/// # Safety
/// `p` is NULL or points to `count` readable elements that outlive `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(
    p: *const T,
    count: usize,
    what: &str,
) -> Result<&'a [T], Failure> {
    if count == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if count > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Failure::invalid(format!(
            "`{what}` count {count} is not a valid size"
        )));
    }
    // SAFETY: non-NULL, `count` readable elements per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// Copies `text` plus a NUL into `buf` (`len` bytes); `needed` (optional)
/// receives the size required.
///
/// # Safety
/// `buf` points to `len` writable bytes or is NULL; `needed` is NULL or
/// writable.
pub(crate) unsafe fn copy_bytes(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    let size = text.len() + 1;
    if !needed.is_null() {
        // SAFETY: checked non-NULL; writable per the caller's contract.
        unsafe { needed.write(size) };
    }
    if buf.is_null() && len > 0 {
        return Err(Failure::null("buf"));
    }
    if len < size {
        if len > 0 {
            // SAFETY: at least one writable byte.
            unsafe { buf.write(0) };
        }
        return Err(Failure::new(
            MG_ERR_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes; {size} are needed (NUL included)"),
        ));
    }
    // SAFETY: `size <= len` writable bytes; the source is a distinct Rust slice.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(())
}

/// Copies binary `data` (no NUL added) into `buf` (`len` bytes); `needed`
/// (optional) receives `data.len()`. Too small a buffer is left untouched.
///
/// # Safety
/// As for [`copy_bytes`].
pub(crate) unsafe fn copy_raw(
    data: &[u8],
    buf: *mut u8,
    len: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    if !needed.is_null() {
        // SAFETY: checked non-NULL; writable per the caller's contract.
        unsafe { needed.write(data.len()) };
    }
    if buf.is_null() && len > 0 {
        return Err(Failure::null("buf"));
    }
    if len < data.len() {
        return Err(Failure::new(
            MG_ERR_BUFFER_TOO_SMALL,
            format!("the buffer holds {len} bytes; {} are needed", data.len()),
        ));
    }
    if !data.is_empty() {
        // SAFETY: `data.len() <= len` writable bytes (so `buf` is non-NULL);
        // the source is a distinct Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    }
    Ok(())
}

/// [`copy_bytes`] for text.
///
/// # Safety
/// As for [`copy_bytes`].
pub(crate) unsafe fn copy_str(
    text: &str,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> Result<(), Failure> {
    // SAFETY: same contract.
    unsafe { copy_bytes(text.as_bytes(), buf, len, needed) }
}

/// Fills a fixed-size C array with as much of `text` as fits (cut on a
/// character boundary) plus a NUL; returns whether anything was cut.
pub(crate) fn fill_array<const N: usize>(dst: &mut [c_char; N], text: &str) -> bool {
    let room = N.saturating_sub(1);
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    for (d, s) in dst.iter_mut().zip(text.as_bytes()[..end].iter()) {
        *d = *s as c_char;
    }
    for d in dst.iter_mut().skip(end) {
        *d = 0;
    }
    end < text.len()
}

/// Writes `value` through an out-pointer that must not be NULL.
///
/// # Safety
/// `out` is NULL or points to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: checked non-NULL; writable per the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_array_cuts_on_char_boundaries() {
        let mut a = [1 as c_char; 4];
        assert!(fill_array(&mut a, "aé€")); // 1 + 2 + 3 bytes; room for 3
        assert_eq!(a.map(|c| c as u8), [b'a', 0xc3, 0xa9, 0]);
        assert!(!fill_array(&mut a, "ab"));
        assert_eq!(a.map(|c| c as u8), [b'a', b'b', 0, 0]);
    }

    #[test]
    fn copy_reports_the_size_needed() {
        let mut buf = [7 as c_char; 3];
        let mut needed = 0;
        // SAFETY: buf has 3 bytes.
        let err = unsafe { copy_str("abc", buf.as_mut_ptr(), 3, &mut needed) }.unwrap_err();
        assert_eq!(err.code, MG_ERR_BUFFER_TOO_SMALL);
        assert_eq!(needed, 4);
        assert_eq!(buf[0], 0, "a too-small buffer holds an empty string");
        // SAFETY: size query with no buffer.
        unsafe { copy_str("abc", std::ptr::null_mut(), 0, &mut needed) }.unwrap_err();
        assert_eq!(needed, 4);
    }

    #[test]
    fn raw_copies_add_no_nul_and_leave_small_buffers_alone() {
        let mut buf = [7u8; 4];
        let mut needed = 0;
        // SAFETY: buf has 4 bytes.
        let err = unsafe { copy_raw(b"abcde", buf.as_mut_ptr(), 4, &mut needed) }.unwrap_err();
        assert_eq!(err.code, MG_ERR_BUFFER_TOO_SMALL);
        assert_eq!((needed, buf), (5, [7; 4]));
        // SAFETY: as above.
        unsafe { copy_raw(b"abcd", buf.as_mut_ptr(), 4, &mut needed) }.unwrap();
        assert_eq!((needed, &buf), (4, b"abcd"));
        // SAFETY: a NULL buffer with a length is refused before any write.
        let err = unsafe { copy_raw(b"ab", std::ptr::null_mut(), 2, std::ptr::null_mut()) };
        assert_eq!(err.unwrap_err().code, MG_ERR_NULL_POINTER);
    }
}
