//! Durable files for long work: [`write_atomic`] (a reader sees the old file or all of the new one,
//! and a finished write survives a crash) and [`DirLock`] (one live writer per run directory).
//!
//! Every crate of the suite that writes a result, a checkpoint, weights or a cache goes through
//! these two, so "never lose finished results" is decided in one place.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// An I/O failure on a named file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct Error {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Error {
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to `path` atomically; see [`write_atomic_with`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_with(path, |w| w.write_all(bytes).map_err(Error::at(path)))
}

/// Runs `write` on a temporary file in `path`'s directory (created if missing), then syncs it,
/// renames it over `path` and syncs the directory: `path` holds either its old content or all of
/// the new, also after a power cut. The file gets `path`'s old permissions, or `0644` when new
/// (temporary files start private, results are meant to be read).
///
/// On an error from `write` the temporary file is removed and `path` is left as it was.
pub fn write_atomic_with<E>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<Error>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(Error::at(dir))?;
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(Error::at(dir))?;
    {
        let mut writer = BufWriter::new(tmp.as_file_mut());
        write(&mut writer)?;
        writer.flush().map_err(Error::at(path))?;
    }
    let permissions = std::fs::metadata(path)
        .map(|meta| meta.permissions())
        .ok()
        .or_else(default_permissions);
    if let Some(permissions) = permissions {
        tmp.as_file()
            .set_permissions(permissions)
            .map_err(Error::at(path))?;
    }
    tmp.as_file().sync_all().map_err(Error::at(path))?;
    tmp.persist(path).map_err(|e| Error::at(path)(e.error))?;
    sync_dir(dir);
    Ok(())
}

#[cfg(unix)]
fn default_permissions() -> Option<std::fs::Permissions> {
    Some(std::os::unix::fs::PermissionsExt::from_mode(0o644))
}

/// Elsewhere a temporary file already has a new file's default permissions.
#[cfg(not(unix))]
fn default_permissions() -> Option<std::fs::Permissions> {
    None
}

/// Makes a rename in `dir` durable. Only Unix lets a directory be opened and synced; elsewhere (and
/// on file systems that refuse) the rename is as durable as the platform makes it.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{} is in use by another live process ({holder}); wait for it to finish or stop it first",
        .dir.display()
    )]
    Held { dir: PathBuf, holder: String },
    #[error(transparent)]
    Io(#[from] Error),
}

/// An exclusive lock on a directory, held until dropped (or until the process dies, however it
/// dies: the operating system releases it, so a lock left by a killed process never blocks a rerun).
///
/// The lock is an advisory `flock` on `<dir>/.lock`, which also records who holds it (process id,
/// host, command) for the message a second writer gets.
#[derive(Debug)]
pub struct DirLock {
    // Holding the open, locked file is what holds the lock.
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The name of the lock file inside a locked directory.
    pub const FILE_NAME: &'static str = ".lock";

    /// Locks `dir` (creating it if missing), or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        std::fs::create_dir_all(dir).map_err(Error::at(dir))?;
        let path = dir.join(Self::FILE_NAME);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::at(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "a process that has not written its name yet".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::at(&path)(e).into()),
        }
        let record = format!("pid {} on {}: {}\n", std::process::id(), host(), command());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(record.as_bytes()))
            .map_err(Error::at(&path))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this host".into())
}

fn command() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/table.csv");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new content").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["table.csv"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            write_atomic(&path, b"again").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "an existing file keeps its permissions"
            );
        }
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        write_atomic(&path, b"finished").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"half").map_err(Error::at(&path))?;
            Err(Error::at(&path)(std::io::Error::other("disk full")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("summary.json"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"finished");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_held_lock_names_its_holder_and_is_free_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let lock = DirLock::acquire(&run).unwrap();
        // flock locks belong to open files, so a second open in the same process conflicts too.
        let err = DirLock::acquire(&run).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        assert!(text.contains(&run.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(lock);
        DirLock::acquire(&run).unwrap();
    }
}
