//! What every experiment binary shares: the common flags (`--out`, `--seed`, `--threads`,
//! `--shard K/N`, `--resume`, `--quiet`), contiguous sharding, atomic file writes, a chunk store
//! that makes runs resumable after `kill -9`, and the provenance sidecar.

use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::BpttError;

/// Flags shared by every experiment binary.
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub struct CommonArgs {
    /// Output directory [default: results/<experiment>/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of every random stream (ChaCha8 per work item: results do not depend on threads or shards)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Run only shard K of N (1-based; contiguous blocks of work, so shard outputs concatenated in order equal the full run)
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: Shard,
    /// Continue an interrupted run in --out: completed chunks are kept, the rest is computed
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no summary table
    #[arg(long)]
    pub quiet: bool,
}

impl CommonArgs {
    /// The output directory: `--out`, or `results/<experiment>/`.
    pub fn out_dir(&self, experiment: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("results").join(experiment))
    }

    /// Configure rayon's global pool with `--threads` (once per process); returns the count.
    pub fn init_threads(&self) -> Result<usize, BpttError> {
        if self.threads == Some(0) {
            return Err(BpttError::Invalid("--threads must be at least 1".into()));
        }
        let mut builder = rayon::ThreadPoolBuilder::new();
        if let Some(t) = self.threads {
            builder = builder.num_threads(t);
        }
        builder
            .build_global()
            .map_err(|e| BpttError::Invalid(format!("cannot start the thread pool: {e}")))?;
        Ok(rayon::current_num_threads())
    }
}

/// Shard K of N (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid shard '{s}': expected K/N with 1 ≤ K ≤ N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// This shard's contiguous block of `total` work chunks: `[⌊(K−1)·total/N⌋, ⌊K·total/N⌋)`.
    pub fn range(&self, total: usize) -> Range<usize> {
        (self.k - 1) * total / self.n..self.k * total / self.n
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over `path`. A reader (or a resumed run) sees the old file or the
/// complete new one, never a partial one.
/// The memory this machine can give a run now (`MemAvailable` of `/proc/meminfo`), or `None`
/// where that is not known.
#[must_use]
pub fn available_memory() -> Option<u128> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuse a plan before anything is allocated or written: `estimate` is the bytes it would
/// hold at once (`None`: the count overflowed), compared with [`available_memory`] (or 1 TiB
/// where that is unknown). `what` names what the estimate counts, for the message.
pub fn check_plan_memory(estimate: Option<u128>, what: &str) -> Result<(), String> {
    const GIB: f64 = (1u64 << 30) as f64;
    let limit = available_memory().unwrap_or(1 << 40);
    match estimate {
        Some(bytes) if bytes <= limit => Ok(()),
        Some(bytes) => Err(format!(
            "this plan needs about {:.1} GiB at once ({what}); {:.1} GiB are available: use \
             smaller sizes or fewer items",
            bytes as f64 / GIB,
            limit as f64 / GIB
        )),
        None => Err(format!(
            "this plan is too large to count ({what}): use smaller sizes or fewer items"
        )),
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Chunks of an experiment's output, each written atomically to `<out>/chunks/`, with a
/// manifest of the arguments that define the work (a resumed run must match it).
pub struct ChunkStore {
    dir: PathBuf,
}

impl ChunkStore {
    /// Open the store under `out`. Without `resume` any previous chunks are removed; with it,
    /// the stored manifest must equal `manifest`.
    pub fn open(out: &Path, manifest: &serde_json::Value, resume: bool) -> Result<Self, BpttError> {
        let dir = out.join("chunks");
        let io = |e: std::io::Error| BpttError::Invalid(format!("{}: {e}", dir.display()));
        let path = dir.join("manifest.json");
        if resume && path.exists() {
            let stored: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).map_err(io)?)
                    .map_err(|e| BpttError::Invalid(format!("{}: {e}", path.display())))?;
            if &stored != manifest {
                return Err(BpttError::Invalid(format!(
                    "--resume: the run in {} was started with different arguments:\n  stored:  {stored}\n  current: {manifest}",
                    out.display()
                )));
            }
        } else {
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io)?;
            }
            fs::create_dir_all(&dir).map_err(io)?;
            write_atomic(&path, manifest.to_string().as_bytes()).map_err(io)?;
        }
        // leftovers of writes interrupted by a kill
        for e in fs::read_dir(&dir).map_err(io)? {
            let p = e.map_err(io)?.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
            {
                fs::remove_file(&p).map_err(io)?;
            }
        }
        Ok(ChunkStore { dir })
    }

    fn path(&self, index: usize, part: &str) -> PathBuf {
        self.dir.join(format!("{index:06}.{part}"))
    }

    /// Whether chunk `index` is complete (its `done` part, written last, exists).
    pub fn is_done(&self, index: usize) -> bool {
        self.path(index, "done").exists()
    }

    /// Store the parts of chunk `index` atomically, then mark it done.
    pub fn write(&self, index: usize, parts: &[(&str, &[u8])]) -> std::io::Result<()> {
        for (name, bytes) in parts {
            write_atomic(&self.path(index, name), bytes)?;
        }
        write_atomic(&self.path(index, "done"), b"")
    }

    /// Read part `name` of chunk `index`.
    pub fn read(&self, index: usize, name: &str) -> std::io::Result<Vec<u8>> {
        fs::read(self.path(index, name))
    }

    /// Remove the chunk files (after the final outputs are assembled).
    pub fn remove(self) -> std::io::Result<()> {
        fs::remove_dir_all(&self.dir)
    }
}

/// An experiment binary's exit: `Ok` → 0; `Err((code, message))` → the message on stderr as
/// `error: …` and the code (1 for I/O failures, 2 for bad arguments).
pub fn exit(result: Result<(), (u8, String)>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            std::process::ExitCode::from(code)
        }
    }
}

/// The git commit of the source tree this binary was built from, if git can tell.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The current UTC time as RFC 3339 (`2026-11-27T12:34:56Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_work_contiguously() {
        for total in [0usize, 1, 5, 21, 126] {
            for n in 1..=7 {
                let ranges: Vec<_> = (1..=n).map(|k| Shard { k, n }.range(total)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[n - 1].end, total);
                for w in ranges.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
            }
        }
        assert_eq!("2/8".parse::<Shard>().unwrap(), Shard { k: 2, n: 8 });
        for bad in ["3/2", "0/1", "1/0", "x", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
