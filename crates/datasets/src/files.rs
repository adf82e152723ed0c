//! What kind of file system entry a path is, and reading only regular files.
//!
//! Every reader in the workspace (data files, label lists, checkpoints, run files) goes through
//! [`read_regular`]: opening a FIFO for reading blocks until a writer appears, and a link to a
//! device such as `/dev/zero` never ends, so the kind of entry is checked before it is opened.
use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The kind of entry at a path, symbolic links followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Nothing there (not even a link).
    Missing,
    /// A regular file of this many bytes.
    Regular(u64),
    Directory,
    /// A symbolic link whose target does not exist.
    DanglingLink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// Something else, or an entry whose metadata cannot be read.
    Other,
}

impl EntryKind {
    /// Whether anything (a dangling link included) is at the path.
    pub fn exists(self) -> bool {
        self != EntryKind::Missing
    }

    pub fn is_regular(self) -> bool {
        matches!(self, EntryKind::Regular(_))
    }

    /// "a directory", "a FIFO", ...: what an error says the entry is instead of a regular file.
    pub fn describe(self) -> &'static str {
        match self {
            EntryKind::Missing => "missing",
            EntryKind::Regular(_) => "a regular file",
            EntryKind::Directory => "a directory",
            EntryKind::DanglingLink => "a dangling symbolic link",
            EntryKind::Fifo => "a FIFO",
            EntryKind::Socket => "a socket",
            EntryKind::CharDevice => "a character device",
            EntryKind::BlockDevice => "a block device",
            EntryKind::Other => "not a readable file system entry",
        }
    }
}

/// The kind of entry at `path`, without opening it.
pub fn entry_kind(path: &Path) -> EntryKind {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => {
            return if std::fs::symlink_metadata(path).is_ok() { EntryKind::DanglingLink } else { EntryKind::Missing };
        }
    };
    let ty = meta.file_type();
    if ty.is_file() {
        return EntryKind::Regular(meta.len());
    }
    if ty.is_dir() {
        return EntryKind::Directory;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return EntryKind::Fifo;
        }
        if ty.is_socket() {
            return EntryKind::Socket;
        }
        if ty.is_char_device() {
            return EntryKind::CharDevice;
        }
        if ty.is_block_device() {
            return EntryKind::BlockDevice;
        }
    }
    EntryKind::Other
}

/// The length of the regular file at `path`; an error saying what the entry is otherwise
/// (`NotFound` when nothing is there).
pub fn require_regular(path: &Path) -> std::io::Result<u64> {
    match entry_kind(path) {
        EntryKind::Regular(len) => Ok(len),
        EntryKind::Missing => Err(Error::new(ErrorKind::NotFound, "no such file")),
        other => Err(Error::new(ErrorKind::InvalidInput, format!("{}, not a regular file", other.describe()))),
    }
}

/// Reads the regular file at `path`, refusing other entries before opening them and files longer
/// than `max_len` bytes before reading them.
pub fn read_regular(path: &Path, max_len: u64) -> std::io::Result<Vec<u8>> {
    let len = require_regular(path)?;
    if len > max_len {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max_len} a file of this kind may have"),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    // `take` keeps a file that grows while it is read within the bound too.
    std::fs::File::open(path)?.take(max_len + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max_len {
        return Err(Error::new(ErrorKind::InvalidData, format!("grew past {max_len} bytes while being read")));
    }
    Ok(out)
}

/// [`read_regular`] as UTF-8 text; a leading byte-order mark is dropped (editors on Windows write
/// one, and it would otherwise become part of the first line).
pub fn read_text(path: &Path, max_len: u64) -> std::io::Result<String> {
    let bytes = read_regular(path, max_len)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        )
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..3);
    }
    Ok(text)
}

/// No data file of any supported format is larger (SVHN's `extra_32x32.mat` is 1.3 GB).
pub const MAX_DATA_FILE: u64 = 16 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_without_opening() {
        let dir = std::env::temp_dir().join(format!("adapt-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(entry_kind(&file), EntryKind::Regular(3));
        assert_eq!(entry_kind(&dir), EntryKind::Directory);
        assert_eq!(entry_kind(&dir.join("none")), EntryKind::Missing);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("none"), dir.join("dangling")).unwrap();
            assert_eq!(entry_kind(&dir.join("dangling")), EntryKind::DanglingLink);
            std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
            assert_eq!(entry_kind(&dir.join("zero")), EntryKind::CharDevice);
            let e = read_regular(&dir.join("zero"), 10).unwrap_err().to_string();
            assert!(e.contains("character device"), "{e}");
            assert!(std::process::Command::new("mkfifo").arg(dir.join("fifo")).status().unwrap().success());
            // Would block forever if it were opened.
            let e = read_regular(&dir.join("fifo"), 10).unwrap_err().to_string();
            assert!(e.contains("FIFO"), "{e}");
        }
        assert!(read_regular(&file, 2).unwrap_err().to_string().contains("3 bytes"));
        std::fs::write(&file, b"\xef\xbb\xbfname 1\n").unwrap();
        assert_eq!(read_text(&file, 100).unwrap(), "name 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
