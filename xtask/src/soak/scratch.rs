//! The filesystem a soak runs on: a loop-mounted ext4 image or a tmpfs when we are root, else a
//! directory on whatever filesystem is at hand (and the run says so). A [`Scratch`] unmounts and
//! deletes everything in `Drop`, so an error or a panic does not leave a mount behind.
//!
//! The filesystem matters: ext4 reuses a deleted file's inode number for the next file created,
//! so a process that remembers "log file = inode N" can be fooled after a compaction replaced the
//! log; tmpfs hands out fresh inode numbers and hides that class of bug.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Size of the ext4 image (sparse: only what the vault writes takes disk space).
const EXT4_IMAGE_BYTES: u64 = 512 * 1024 * 1024;
/// Size limit of the tmpfs.
const TMPFS_SIZE: &str = "size=256m";

/// Which filesystem a soak asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Tmpfs,
    Here,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Tmpfs => "tmpfs",
            FsKind::Here => "here",
        }
    }
}

/// A directory on the filesystem under test, removed (and unmounted) on drop.
pub struct Scratch {
    /// Where the vault, its state directory and the passphrase files go.
    pub dir: PathBuf,
    /// The filesystem type `dir` really is on, from the mount table.
    pub actual: String,
    /// How it was set up, or why it fell back to the filesystem at hand.
    pub how: String,
    /// True when `wanted` could not be provided.
    pub fallback: bool,
    /// Our own mount point, unmounted on drop.
    mount: Option<PathBuf>,
    /// Removed on drop, after unmounting.
    base: PathBuf,
}

impl Scratch {
    /// Sets up `kind` under `work` (a directory in the target dir); `work` also holds the ext4
    /// image.
    pub fn new(kind: FsKind, work: &Path) -> Result<Scratch> {
        clean_stale(work);
        let base = work.join(format!("{}-{}", kind.name(), std::process::id()));
        if base.exists() {
            fs::remove_dir_all(&base).with_context(|| format!("removing {}", base.display()))?;
        }
        fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let mut scratch = Scratch {
            dir: base.join("dir"),
            actual: String::new(),
            how: String::new(),
            fallback: false,
            mount: None,
            base,
        };
        let mounted = match kind {
            FsKind::Ext4 => scratch.mount_ext4(),
            FsKind::Tmpfs => scratch.mount_tmpfs(),
            FsKind::Here => Ok(()),
        };
        match (kind, mounted) {
            (FsKind::Here, _) => scratch.how = "a directory under the target dir".into(),
            (_, Ok(())) => {}
            (_, Err(e)) => {
                scratch.fallback = true;
                scratch.how = format!(
                    "FALLBACK to a directory on the filesystem at hand, not a fresh {}: {e:#}",
                    kind.name()
                );
            }
        }
        fs::create_dir_all(&scratch.dir)
            .with_context(|| format!("creating {}", scratch.dir.display()))?;
        scratch.actual = fs_type(&scratch.dir).unwrap_or_else(|| "unknown".into());
        if !scratch.fallback && kind != FsKind::Here && scratch.actual != kind.name() {
            // Belt and braces: never report "ext4" for a run that was not on ext4.
            scratch.fallback = true;
            scratch.how = format!(
                "FALLBACK: asked for {} but the directory is on {}",
                kind.name(),
                scratch.actual
            );
        }
        Ok(scratch)
    }

    fn mount_ext4(&mut self) -> Result<()> {
        if !is_root() {
            bail!("not root, cannot loop-mount an ext4 image");
        }
        let image = self.base.join("ext4.img");
        let f =
            fs::File::create(&image).with_context(|| format!("creating {}", image.display()))?;
        f.set_len(EXT4_IMAGE_BYTES)
            .with_context(|| format!("sizing {}", image.display()))?;
        drop(f);
        tool(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        let mnt = self.base.join("mnt");
        fs::create_dir_all(&mnt)?;
        tool(
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop"])
                .arg(&image)
                .arg(&mnt),
        )?;
        self.mount = Some(mnt.clone());
        self.dir = mnt.join("soak");
        self.how = format!(
            "loop-mounted {} MiB image {}",
            EXT4_IMAGE_BYTES >> 20,
            image.display()
        );
        Ok(())
    }

    fn mount_tmpfs(&mut self) -> Result<()> {
        let mnt = self.base.join("mnt");
        if is_root() {
            fs::create_dir_all(&mnt)?;
            match tool(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
                    .arg(&mnt),
            ) {
                Ok(()) => {
                    self.mount = Some(mnt.clone());
                    self.dir = mnt.join("soak");
                    self.how = format!("tmpfs mounted on {} ({TMPFS_SIZE})", mnt.display());
                    return Ok(());
                }
                Err(e) => eprintln!("soak: mounting a tmpfs failed ({e:#}); trying /dev/shm"),
            }
        }
        let shm = Path::new("/dev/shm");
        if fs_type(shm).as_deref() == Some("tmpfs") {
            // Not under `base`: remember it as the directory to remove on drop.
            let dir = shm.join(format!("vault-soak-{}", std::process::id()));
            fs::create_dir_all(&dir)?;
            self.dir = dir.join("soak");
            self.how = format!("{} (not root: /dev/shm instead of a mount)", dir.display());
            let _ = fs::remove_dir_all(&self.base);
            self.base = dir;
            return Ok(());
        }
        bail!("not root and /dev/shm is not a tmpfs")
    }

    /// Copies the vault directory tree somewhere that survives the unmount, for a post-mortem.
    pub fn preserve(&self, to: &Path) -> Result<()> {
        copy_tree(&self.dir, to)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mnt) = self.mount.take()
            && let Err(e) = unmount(&mnt)
        {
            eprintln!(
                "soak: WARNING: could not unmount {}: {e:#}; unmount it by hand",
                mnt.display()
            );
            return; // never delete through a mount point we failed to unmount
        }
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!(
                "soak: WARNING: could not remove {}: {e}",
                self.base.display()
            );
        }
    }
}

/// Unmounts `mnt`, retrying while a just-killed child may still hold a file open, then lazily.
fn unmount(mnt: &Path) -> Result<()> {
    for _ in 0..10 {
        if tool(Command::new("umount").arg(mnt)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    tool(Command::new("umount").arg("-l").arg(mnt))
}

/// Removes what an earlier run killed before its `Drop` (Ctrl-C) left under `work`: directories
/// `<kind>-<pid>` whose process is gone, unmounting them first.
fn clean_stale(work: &Path) {
    let Ok(entries) = fs::read_dir(work) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .split_once('-')
            .and_then(|(kind, pid)| ["ext4", "tmpfs", "here"].contains(&kind).then_some(pid))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue; // ours, or another run still in progress
        }
        let base = entry.path();
        let mnt = base.join("mnt");
        if is_mount_point(&mnt) && unmount(&mnt).is_err() {
            eprintln!("soak: cannot unmount the stale {}", mnt.display());
            continue;
        }
        eprintln!(
            "soak: removing {} left by an interrupted run",
            base.display()
        );
        let _ = fs::remove_dir_all(&base);
    }
}

/// Runs a system tool, turning a failure into an error with its stderr.
fn tool(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The effective user id is 0 (read from /proc: xtask forbids `unsafe`, so no `geteuid`).
fn is_root() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Mount points and filesystem types from the mount table (octal escapes such as `\040` decoded).
fn mounts() -> Vec<(PathBuf, String)> {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    table
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _device = f.next()?;
            let point = unescape(f.next()?);
            let kind = f.next()?.to_string();
            Some((PathBuf::from(point), kind))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| c == b'\\' && d.iter().all(|x| (b'0'..=b'7').contains(x)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mount_point(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    mounts().iter().any(|(p, _)| *p == dir)
}

/// The type of the filesystem `dir` is on: that of the longest mount point containing it.
pub fn fs_type(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    mounts()
        .into_iter()
        .filter(|(p, _)| dir.starts_with(p))
        .max_by_key(|(p, _)| p.components().count())
        .map(|(_, kind)| kind)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else {
            fs::copy(entry.path(), &dst)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
