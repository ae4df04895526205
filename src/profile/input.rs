//! Reading a profile file without letting the file hurt the reader: regular
//! files only, and never more than [`MAX_PROFILE_BYTES`].

use std::{
    fs::{File, OpenOptions},
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

use super::{FileKind, ProfileError};

/// The largest profile file read, in bytes (4 MiB). A generated profile of
/// 10,000 rules is about 0.5 MiB; the limit stops a path such as
/// `/proc/kcore`, or a runaway generator, from filling memory.
pub const MAX_PROFILE_BYTES: u64 = 4 * 1024 * 1024;

/// The text of the profile at `path`.
///
/// Opened with `O_NONBLOCK` so that a FIFO with no writer cannot block the
/// open, then checked with `fstat` on the opened descriptor (no window for a
/// swap between a check and the open), and read up to one byte past the
/// limit so that an endless file (`/dev/zero`) costs nothing.
pub(super) fn read(path: &Path) -> Result<String, ProfileError> {
    let io = |source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            FileKind::Directory
        } else if kind.is_fifo() {
            FileKind::Fifo
        } else if kind.is_char_device() {
            FileKind::CharDevice
        } else if kind.is_block_device() {
            FileKind::BlockDevice
        } else if kind.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Other
        };
        return Err(ProfileError::NotRegularFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let mut bytes = Vec::new();
    read_at_most(file, MAX_PROFILE_BYTES + 1, &mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_PROFILE_BYTES,
        });
    }
    // The error names the problem, not the bytes.
    String::from_utf8(bytes).map_err(|_| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })
}

fn read_at_most(file: File, limit: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    file.take(limit).read_to_end(out).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mg-input-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn dev_zero_is_refused_as_a_device() {
        let err = read(Path::new("/dev/zero")).unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::NotRegularFile {
                    kind: FileKind::CharDevice,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "reading profile /dev/zero: is a character device, not a regular file"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let err = read(Path::new("/")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("is a directory, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_it_is_read() {
        let dir = temp_dir("size");
        let at = dir.join("at.yaml");
        let over = dir.join("over.yaml");
        let mut text = "#".repeat(MAX_PROFILE_BYTES as usize);
        std::fs::write(&at, &text).unwrap();
        text.push('\n');
        std::fs::write(&over, &text).unwrap();
        assert_eq!(read(&at).unwrap().len() as u64, MAX_PROFILE_BYTES);
        let err = read(&over).unwrap_err();
        assert!(
            matches!(err, ProfileError::TooLarge { limit, .. } if limit == MAX_PROFILE_BYTES),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_utf8_is_an_io_error_without_the_bytes() {
        let dir = temp_dir("utf8");
        let path = dir.join("p.yaml");
        std::fs::write(&path, b"name: \xff\xfeSECRET").unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, ProfileError::Io { .. }), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
