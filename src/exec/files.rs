//! Reading the files a plan names (the plan itself, its CSV imports, `file:` secrets) without
//! trusting what they are.
//!
//! Entry point: [`read_regular`]. Invariants: only a regular file is read (a FIFO, a device such
//! as `/dev/zero`, a socket or a folder is refused without blocking: the file is opened with
//! `O_NONBLOCK` and checked on the open descriptor, so it cannot be swapped between a check and
//! the read), and never more than the bound given (a file that grows while it is read, or a
//! `/proc` file that says it is empty, is cut off at the bound and refused).

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Why a file was not read. The message names the path; it never quotes the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// It could not be opened or read (missing, permission, …): the system's words (the caller
    /// names the path).
    Io(String),
    /// It is not a regular file: what it is instead.
    NotRegular(&'static str),
    /// It holds more than the bound (in bytes).
    TooLarge(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(why) => f.write_str(why),
            ReadError::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            ReadError::TooLarge(len) => write!(f, "it holds more than {len} bytes"),
        }
    }
}

/// Open `path` without blocking on a FIFO or a device, and check that it is a regular file.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| ReadError::Io(io_words(&e)))?;
    let meta = file.metadata().map_err(|e| ReadError::Io(io_words(&e)))?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    Ok(file)
}

/// The whole content of a regular file of at most `max_len` bytes.
pub fn read_regular(path: &Path, max_len: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let announced = file.metadata().map_or(0, |m| m.len());
    if announced > max_len {
        return Err(ReadError::TooLarge(max_len));
    }
    let mut bytes = Vec::new();
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(io_words(&e)))?;
    if bytes.len() as u64 > max_len {
        return Err(ReadError::TooLarge(max_len));
    }
    Ok(bytes)
}

fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_never_past_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "address\n").expect("write");
        assert_eq!(read_regular(&file, 100).expect("read"), b"address\n");
        assert_eq!(read_regular(&file, 3), Err(ReadError::TooLarge(3)));
        assert_eq!(
            read_regular(dir.path(), 100),
            Err(ReadError::NotRegular("a folder"))
        );
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 100),
            Err(ReadError::NotRegular("a device"))
        );
        // A FIFO nobody writes to: refused at once instead of waiting for a writer.
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        assert_eq!(
            read_regular(&fifo, 100),
            Err(ReadError::NotRegular("a FIFO"))
        );
        // A /proc file announces 0 bytes and holds more: cut at the bound.
        assert_eq!(
            read_regular(Path::new("/proc/self/maps"), 10),
            Err(ReadError::TooLarge(10))
        );
        let missing = read_regular(&dir.path().join("nope"), 10).expect_err("missing");
        assert_eq!(missing.to_string(), "it does not exist");
    }
}
