//! Where `--out FILE` goes: a regular file is written as an anonymous file in its directory
//! (`O_TMPFILE`: it has no name, so a killed command leaves nothing behind, plaintext least of
//! all), then linked and renamed over the target only when complete; a device or FIFO (or a
//! symlink to one, such as `/dev/stdout`) is written through as it is; anything else is refused.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::exit::Exit;
use crate::{Failure, fail};

/// A result file being written.
pub(crate) enum OutFile {
    /// An anonymous file in `dir`, to appear at `path` when finished.
    Anonymous {
        file: File,
        dir: PathBuf,
        path: PathBuf,
    },
    /// A named temporary file (a file system without `O_TMPFILE`), removed if dropped.
    Named(tempfile::NamedTempFile, PathBuf),
    /// A device or FIFO, written through.
    Direct(File, PathBuf),
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> Failure {
    fail(
        Exit::Usage,
        format!("cannot write to {}: {why}", path.display()),
    )
}

/// Refuses an output path inside the vault's directory or its state directory: writing a result
/// over `header` or `log.0` would destroy the vault (hostile pass finding).
fn check_not_inside(path: &Path, guarded: &[PathBuf]) -> Result<(), Failure> {
    let parent = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(dir) = std::fs::canonicalize(parent) else {
        return Ok(()); // no such directory: the create fails with its own message
    };
    let resolved = std::fs::canonicalize(path).ok();
    for g in guarded {
        if let Ok(g) = std::fs::canonicalize(g)
            && (dir.starts_with(&g) || resolved.as_ref().is_some_and(|r| r.starts_with(&g)))
        {
            return Err(refuse(
                path,
                format!("it is inside {}, which vault manages", g.display()),
            ));
        }
    }
    Ok(())
}

impl OutFile {
    /// Opens the output for `path` (see the module's docs), refusing a path inside any of
    /// `guarded` (the vault's directory and state directory).
    pub(crate) fn create(path: &Path, guarded: &[PathBuf]) -> Result<OutFile, Failure> {
        // Stdout (or stderr) named: the descriptor this command was given (under the agent, its
        // client's), written where it stands. Reopening the name would start a redirected file
        // over at its beginning (`>>` lost, earlier output overwritten), or reach the agent's
        // own streams.
        let stream = if crate::output::is_stdout_path(path) {
            Some(crate::output::stdout_file())
        } else if [
            Path::new("/dev/stderr"),
            Path::new("/proc/self/fd/2"),
            Path::new("/dev/fd/2"),
        ]
        .contains(&path)
        {
            Some(crate::output::stderr_file())
        } else {
            None
        };
        if let Some(f) = stream {
            return Ok(OutFile::Direct(
                f.map_err(|e| refuse(path, e))?,
                path.to_path_buf(),
            ));
        }
        check_not_inside(path, guarded)?;
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let mut target = path.to_path_buf();
        // What the path leads to (through symlinks: /dev/stdout is one, to a pipe or terminal).
        match std::fs::metadata(path) {
            Ok(m)
                if m.file_type().is_char_device()
                    || m.file_type().is_fifo()
                    || m.file_type().is_socket() =>
            {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| refuse(path, e))?;
                return Ok(OutFile::Direct(f, path.to_path_buf()));
            }
            Ok(m) if !m.is_file() => {
                return Err(refuse(path, "it is not a regular file"));
            }
            // A symlink to a regular file: the file is replaced, the link kept.
            Ok(_) if is_link => {
                target = std::fs::canonicalize(path).map_err(|e| refuse(path, e))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_link => {
                return Err(refuse(path, "a symlink to nothing"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(refuse(path, e)),
        }
        let dir = target
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        sweep_stale_links(&dir);
        match rustix::fs::open(
            &dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                let file = File::from(fd);
                // Held until the process ends: a name this file is linked under, found later
                // with its lock free, is the leftover of a killed command (swept above).
                file.lock().map_err(|e| refuse(path, e))?;
                Ok(OutFile::Anonymous {
                    file,
                    dir,
                    path: target,
                })
            }
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL,
            ) => {
                let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| refuse(path, e))?;
                Ok(OutFile::Named(tmp, target))
            }
            Err(e) => Err(refuse(path, std::io::Error::from(e))),
        }
    }

    /// The path the result is for, for messages.
    pub(crate) fn path(&self) -> &Path {
        match self {
            OutFile::Anonymous { path, .. }
            | OutFile::Named(_, path)
            | OutFile::Direct(_, path) => path,
        }
    }

    /// Makes the result durable and puts it in place.
    pub(crate) fn finish(self) -> Result<(), Failure> {
        let failed = |path: &Path, e: std::io::Error| {
            fail(Exit::Other, format!("cannot write {}: {e}", path.display()))
        };
        // Under the agent, a client killed meanwhile gets nothing: a killed command leaves
        // nothing behind, with or without the agent.
        if crate::agent::served::client_gone() {
            return Err(fail(
                Exit::Other,
                format!(
                    "{}: the command was stopped; nothing written",
                    self.path().display()
                ),
            ));
        }
        match self {
            OutFile::Direct(mut f, path) => f.flush().map_err(|e| failed(&path, e)),
            OutFile::Named(mut tmp, path) => {
                tmp.as_file_mut()
                    .flush()
                    .and_then(|()| tmp.as_file().sync_all())
                    .map_err(|e| failed(&path, e))?;
                tmp.persist(&path).map_err(|e| failed(&path, e.error))?;
                sync_dir(&path);
                Ok(())
            }
            OutFile::Anonymous {
                mut file,
                dir,
                path,
            } => {
                file.flush()
                    .and_then(|()| file.sync_all())
                    .map_err(|e| failed(&path, e))?;
                // Give it a name beside the target, then rename it over the target: readers
                // see the old file or the whole new one. With nothing at the target yet, the
                // link is made there directly (nothing to rename, nothing to leave behind).
                let fd = rustix::fd::AsRawFd::as_raw_fd(&file);
                let proc_path = format!("/proc/self/fd/{fd}");
                match rustix::fs::linkat(
                    rustix::fs::CWD,
                    proc_path.as_str(),
                    rustix::fs::CWD,
                    &path,
                    AtFlags::SYMLINK_FOLLOW,
                ) {
                    Ok(()) => {
                        sync_dir(&path);
                        return Ok(());
                    }
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(failed(&path, std::io::Error::from(e))),
                }
                let mut last = None;
                for _ in 0..16 {
                    let mut suffix = [0u8; 6];
                    name_suffix(&mut suffix);
                    let name = dir.join(format!(
                        ".vault-out-{}.tmp",
                        suffix
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    ));
                    match rustix::fs::linkat(
                        rustix::fs::CWD,
                        proc_path.as_str(),
                        rustix::fs::CWD,
                        &name,
                        AtFlags::SYMLINK_FOLLOW,
                    ) {
                        Ok(()) => {
                            return match std::fs::rename(&name, &path) {
                                Ok(()) => {
                                    sync_dir(&path);
                                    Ok(())
                                }
                                Err(e) => {
                                    let _ = std::fs::remove_file(&name);
                                    Err(failed(&path, e))
                                }
                            };
                        }
                        Err(rustix::io::Errno::EXIST) => continue,
                        Err(e) => last = Some(std::io::Error::from(e)),
                    }
                    break;
                }
                Err(failed(
                    &path,
                    last.unwrap_or_else(|| std::io::Error::other("no free temporary name")),
                ))
            }
        }
    }
}

/// Removes `.vault-out-*.tmp` names in `dir` left by killed commands: each is a link to a file
/// its command held locked until it ended, so a lock that can be taken now means no one is
/// writing it (a running command's link is left alone).
fn sweep_stale_links(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".vault-out-") && name.ends_with(".tmp")) {
            continue;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NONBLOCK.bits() as i32 | OFlags::NOFOLLOW.bits() as i32)
            .open(e.path())
        else {
            continue;
        };
        if f.metadata().is_ok_and(|m| m.is_file()) && f.try_lock().is_ok() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A suffix for the link's temporary name: unpredictability is not needed (linkat never follows
/// or replaces an existing name; a taken one is retried), only rarity.
fn name_suffix(buf: &mut [u8]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = nanos ^ std::process::id().rotate_left(13);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (mixed >> ((i % 4) * 8)) as u8 ^ (i as u8).wrapping_mul(37);
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            OutFile::Anonymous { file, .. } | OutFile::Direct(file, _) => file.write(buf),
            OutFile::Named(t, _) => t.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OutFile::Anonymous { file, .. } | OutFile::Direct(file, _) => file.flush(),
            OutFile::Named(t, _) => t.flush(),
        }
    }
}
