//! libseccomp (2.5, as in Debian 12) exports only to a file descriptor: give
//! it a memfd and read the bytes back.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::fd::FromRawFd,
};

use super::SeccompError;

/// Runs `export` on a fresh memfd and returns what it wrote.
pub(super) fn to_bytes(
    export: impl FnOnce(&File) -> Result<(), SeccompError>,
) -> Result<Vec<u8>, SeccompError> {
    // SAFETY: memfd_create returns a new fd we own (or -1).
    let raw = unsafe { libc::memfd_create(c"minerguard-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: raw is a valid, owned, open fd.
    let mut file = unsafe { File::from_raw_fd(raw) };
    export(&file)?;
    file.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out)?;
    Ok(out)
}
