//! Where an `SQLite` store may live: checks of the file and its folder before use, and the
//! creation of both closed to everyone but the user.

use std::path::Path;

use super::StateError;

/// Whether the state may be used where it is: the file (when it exists) is a regular file, not
/// a symbolic link, and (once it is known to be a store, [`check_owner`]) owned by the user
/// running mailplan and closed to everyone else (0600); its
/// folder is not writable by anyone (unless sticky, as `/tmp` is), and when it is mailplan's own
/// `.mailplan/` it is a real folder of the user's, closed to everyone else (0700). Anyone who
/// can change the store or swap it can make a resume skip or repeat work.
#[cfg(unix)]
pub fn check_place(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_ = |problem: String, help: String| StateError::Unsafe {
        path: path.to_owned(),
        problem,
        help,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(m) = std::fs::symlink_metadata(dir)
    {
        let own = dir.file_name().is_some_and(|n| n == ".mailplan");
        let shown = dir.display();
        if own && !m.is_dir() {
            return Err(unsafe_(
                format!("{shown} is a symbolic link or not a folder"),
                format!("replace {shown} with a folder of your own (mode 0700)"),
            ));
        }
        if own && (m.uid() != me || m.mode() & 0o077 != 0) {
            return Err(unsafe_(
                format!(
                    "its folder {shown} is owned by uid {} with mode {:o}",
                    m.uid(),
                    m.mode() & 0o7777
                ),
                format!("make it yours and private: chown $(id -u) {shown} && chmod 700 {shown}"),
            ));
        }
        if m.is_dir() && m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
            return Err(unsafe_(
                format!(
                    "its folder {shown} may be written by anyone (mode {:o})",
                    m.mode() & 0o7777
                ),
                format!("chmod o-w {shown}, or keep the state in a folder of your own"),
            ));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(unsafe_(
            "it is a symbolic link, which mailplan does not follow".to_owned(),
            "give --state the real file's path".to_owned(),
        )),
        Ok(m) if !m.is_file() => Err(unsafe_(
            "it is not a regular file".to_owned(),
            "give --state the path of a regular file (a new one is created)".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// The second half of [`check_place`], once the file is known to be a mailplan store: it is
/// the user's and closed to everyone else.
#[cfg(unix)]
pub(super) fn check_owner(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_ = |problem: String, help: String| StateError::Unsafe {
        path: path.to_owned(),
        problem,
        help,
    };
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.uid() != me => Err(unsafe_(
            format!("it is owned by uid {}, not by you (uid {me})", m.uid()),
            format!("run mailplan as its owner, or chown $(id -u) {shown}"),
        )),
        Ok(m) if m.mode() & 0o077 != 0 => Err(unsafe_(
            format!("others may read or write it (mode {:o})", m.mode() & 0o7777),
            format!("chmod 600 {shown}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
pub fn check_place(_path: &Path) -> Result<(), StateError> {
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn check_owner(_path: &Path) -> Result<(), StateError> {
    Ok(())
}

#[cfg(unix)]
pub(super) fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
pub(super) fn create_private(path: &Path) -> std::io::Result<()> {
    std::fs::File::create(path).map(drop)
}

#[cfg(unix)]
pub(super) fn restrict(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(super) fn restrict(_dir: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}
