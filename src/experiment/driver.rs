//! The one driver every experiment binary runs on.
//!
//! A binary parses its flags, turns them into an [`Experiment`] (validating every flag and
//! estimating the plan's memory *before* anything is written), and hands it to [`drive`]:
//!
//! ```text
//! arguments → plan → chunks (ChunkStore: resumable after kill -9, --shard K/N) → assemble
//!           → CSV tables (csv crate, serde rows) → Sidecar (provenance) → summary table
//! ```
//!
//! What the driver guarantees for every binary:
//!
//! - **exit codes**: 0 done; 2 bad arguments (flags, a plan too large for the machine, a
//!   `--resume` or `--merge` that does not match); 1 I/O or numerical failure;
//! - **one writer per `--out`**: an advisory lock on `<out>/.bptt.lock` (released by the OS
//!   when the process dies, so a `kill -9` leaves no stale lock);
//! - **no stale outputs**: a fresh run first removes the previous run's outputs in `--out`;
//!   outputs are written atomically and the sidecar last, so a sidecar means a finished run;
//! - **`--resume`** continues an interrupted run (its plan must match), is a no-op that says so
//!   on a finished one, and the sidecar lists every invocation that worked on the output;
//! - **`--merge`** accepts only the complete set of shards `1/N … N/N` of one plan, in order;
//! - **determinism**: chunks are assembled in plan order, so the tables are byte-identical for
//!   any thread count, shard split (merged) or resume;
//! - **plan order**: parallel chunks are handed out in plan order as workers come free, so an
//!   interrupted run has finished a prefix of its plan (up to the chunks in flight) — a binary
//!   whose plan lists the most important work first gets it done first.

use std::fs;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BpttError;

/// Flags shared by every experiment binary.
#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct CommonArgs {
    /// Output directory [default: runs/<experiment>/, git-ignored]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Continue an interrupted run in --out (completed chunks are kept); on a finished run of the same plan, do nothing
    #[arg(long)]
    pub resume: bool,
    /// No progress bar and no summary table
    #[arg(long)]
    pub quiet: bool,
}

/// The flags of binaries whose work is random and can be split over machines.
#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct ShardArgs {
    /// Seed of every random stream (ChaCha8 per work item: results do not depend on threads or shards)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run only shard K of N (1-based; contiguous blocks of work, so shard outputs merged in order equal the full run)
    #[arg(long, value_name = "K/N", default_value = "1/1")]
    pub shard: Shard,
    /// Instead of computing: merge the outputs of the shard runs 1/N … N/N (their --out directories, in shard order) into --out
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "resume")]
    pub merge: Vec<PathBuf>,
}

impl CommonArgs {
    /// The output directory: `--out`, or `runs/<experiment>/`.
    #[must_use]
    pub fn out_dir(&self, experiment: &str) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(experiment))
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

/// Shard K of N (1-based). Serialized as `"K/N"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl Shard {
    /// The whole plan, `1/1`.
    pub const WHOLE: Shard = Shard { k: 1, n: 1 };

    /// This shard's contiguous block of `total` work chunks: `[⌊(K−1)·total/N⌋, ⌊K·total/N⌋)`.
    #[must_use]
    pub fn range(&self, total: usize) -> Range<usize> {
        (self.k - 1) * total / self.n..self.k * total / self.n
    }
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

impl TryFrom<String> for Shard {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Why a run stopped: the message goes to stderr as `error: …`, the variant decides the exit
/// status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Bad arguments: exit status 2.
    Usage(String),
    /// An I/O or numerical failure: exit status 1.
    Failed(String),
}

impl Failure {
    /// The exit status: 2 for bad arguments, 1 otherwise.
    #[must_use]
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

/// `path: error` as an I/O [`Failure`].
fn io(path: &Path) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::Failed(format!("{}: {e}", path.display()))
}

/// One CSV output: its file name and header (the field names of its serde row type).
#[derive(Clone, Debug)]
pub struct Table {
    pub file: String,
    pub header: String,
}

impl Table {
    /// The table `file` whose rows are `R`s (a flat serde struct: its field names are the header).
    #[must_use]
    pub fn of<R: Serialize + Default>(file: &str) -> Table {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(R::default())
            .expect("a flat row type serializes");
        let bytes = w.into_inner().expect("writing to memory");
        let text = String::from_utf8(bytes).expect("csv is UTF-8");
        Table {
            file: file.to_string(),
            header: text.lines().next().unwrap_or_default().to_string(),
        }
    }
}

/// The rows one chunk adds to each table (in [`Experiment::tables`] order), as CSV.
pub struct Rows {
    writers: Vec<csv::Writer<Vec<u8>>>,
}

impl Rows {
    /// No rows yet, for `tables` tables.
    #[must_use]
    pub fn new(tables: usize) -> Rows {
        Rows {
            writers: (0..tables)
                .map(|_| {
                    csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(Vec::new())
                })
                .collect(),
        }
    }

    /// Append `row` to table `table`.
    pub fn push<R: Serialize>(&mut self, table: usize, row: &R) {
        self.writers[table]
            .serialize(row)
            .expect("a flat row type serializes to memory");
    }

    fn into_parts(self) -> Vec<Vec<u8>> {
        self.writers
            .into_iter()
            .map(|w| w.into_inner().expect("writing to memory"))
            .collect()
    }
}

/// What a chunk's computation can use: the output directory (for outputs that are not tables,
/// e.g. models) and the progress bar.
pub struct Context<'a> {
    out: &'a Path,
    bar: &'a indicatif::ProgressBar,
}

impl Context<'_> {
    /// The run's output directory.
    #[must_use]
    pub fn out(&self) -> &Path {
        self.out
    }
    /// Advance the progress bar by `units` (of [`Experiment::UNIT`]).
    pub fn progress(&self, units: u64) {
        self.bar.inc(units);
    }
}

/// The finished tables of a run, for [`Experiment::summarize`].
pub struct Outputs<'a> {
    dir: &'a Path,
}

impl Outputs<'_> {
    /// Every row of table `file`.
    pub fn rows<R: DeserializeOwned>(&self, file: &str) -> Result<Vec<R>, String> {
        let path = self.dir.join(file);
        let mut reader =
            csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        reader
            .deserialize()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What [`Experiment::summarize`] reports: results for the sidecar, a table for the terminal,
/// and whether the results themselves are a failure (e.g. a gradient check that failed): the
/// outputs are written, and the binary exits with status 1 and this message.
pub struct Summary {
    pub results: Value,
    pub table: String,
    pub failure: Option<String>,
}

/// An experiment: a validated plan of independent chunks, each adding rows to the tables.
pub trait Experiment: Sync + Sized {
    /// The binary's name: the sidecar's `experiment` and the default `--out` (`runs/<NAME>`).
    const NAME: &'static str;
    /// What a progress unit counts ("matrices", "runs", "parts").
    const UNIT: &'static str;

    /// The resolved work: everything the outputs depend on. A resumed run must match it.
    fn plan(&self) -> Value;
    /// The CSV tables, in order.
    fn tables(&self) -> Vec<Table>;
    /// Output directories besides the tables (e.g. `models`), removed by a fresh run and
    /// merged by `--merge` (their file names must differ between shards).
    const OUTPUT_DIRS: &'static [&'static str] = &[];
    /// The number of chunks of the whole plan (a shard computes a contiguous block of them).
    fn chunks(&self) -> usize;
    /// Progress units of chunk `index`.
    fn units(&self, _index: usize) -> u64 {
        1
    }
    /// Whether chunks run in parallel with each other (else one after another, each parallel
    /// inside).
    fn parallel_chunks(&self) -> bool {
        false
    }
    /// Compute chunk `index`. An error is a numerical or I/O failure (exit status 1).
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String>;
    /// Results and a summary table from the finished tables and the plan (also of merged
    /// shards, which is why there is no `self`).
    fn summarize(plan: &Value, out: &Outputs<'_>) -> Result<Summary, String>;
}

/// The build this binary comes from, captured by `build.rs` when it was compiled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub crate_version: String,
    /// `git rev-parse HEAD` of the source tree at build time (`None`: not a git checkout).
    pub git_commit: Option<String>,
    /// Whether that tree had uncommitted changes (`git status --porcelain` non-empty).
    pub git_dirty: Option<bool>,
}

impl Build {
    /// This binary's build.
    #[must_use]
    pub fn current() -> Build {
        let commit = option_env!("BPTT_GIT_COMMIT").filter(|c| !c.is_empty());
        Build {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: commit.map(str::to_string),
            git_dirty: commit.and(option_env!("BPTT_GIT_DIRTY").map(|d| d == "true")),
        }
    }
}

/// The machine a run ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
}

impl Host {
    #[must_use]
    pub fn current() -> Host {
        let name = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        Host {
            name,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// One invocation of a binary on an output: a run, a resume, a no-op resume or a merge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invocation {
    pub command_line: Vec<String>,
    pub arguments: Value,
    pub build: Build,
    pub host: Host,
    pub threads: usize,
    pub shard: Shard,
    pub start_time: String,
    /// `None` while running, and for an invocation that was killed.
    pub end_time: Option<String>,
    pub wall_seconds: Option<f64>,
    /// Chunks this invocation computed (0 for a no-op resume or a merge).
    pub chunks_computed: usize,
}

/// The provenance sidecar `<out>/<experiment>.json`, the same keys for every binary; written
/// last, so its presence means the outputs are complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub experiment: String,
    /// The build of the invocation that finished the outputs.
    pub crate_version: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    /// The arguments of that invocation.
    pub arguments: Value,
    pub plan: Value,
    pub shard: Shard,
    /// Chunks of the whole plan, and the range `[start, end)` these outputs hold.
    pub chunks: usize,
    pub chunk_range: [usize; 2],
    pub threads: usize,
    pub host: Host,
    /// Start of the first invocation, end of the last.
    pub start_time: String,
    pub end_time: String,
    /// Sum over the invocations (that finished or were killed after recording) of their wall time.
    pub wall_seconds: f64,
    /// The tables, in order.
    pub outputs: Vec<String>,
    /// For a merge: the shard directories, in order.
    pub merged_from: Vec<PathBuf>,
    pub invocations: Vec<Invocation>,
    /// The experiment's own results ([`Experiment::summarize`]).
    pub results: Value,
}

impl Sidecar {
    /// The sidecar's file name for `experiment`: `spectral-sweep` → `spectral_sweep.json`.
    #[must_use]
    pub fn file_name(experiment: &str) -> String {
        format!("{}.json", experiment.replace('-', "_"))
    }

    /// Read the sidecar of `experiment` in `dir`, if there is one.
    pub fn read(dir: &Path, experiment: &str) -> Result<Option<Sidecar>, Failure> {
        let path = dir.join(Sidecar::file_name(experiment));
        if !path.exists() {
            return Ok(None);
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Failure::Usage(format!(
                "{}: not a {experiment} sidecar ({e})",
                path.display()
            ))
        })
    }

    fn write(&self, dir: &Path) -> Result<(), Failure> {
        let path = dir.join(Sidecar::file_name(&self.experiment));
        let text = serde_json::to_string_pretty(self).expect("a sidecar serializes");
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }
}

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

/// Write `bytes` to `path` atomically: a temporary file in the same directory, flushed and
/// synced, then renamed over `path`. A reader (or a resumed run) sees the old file or the
/// complete new one, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp, mut f) = temp_beside(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// A temporary file next to `path` (same directory, so the rename is atomic).
fn temp_beside(path: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let f = fs::File::create(&tmp)?;
    Ok((tmp, f))
}

/// Write `header` and the concatenation of `parts` to `path` atomically, streaming.
fn assemble(
    path: &Path,
    header: &str,
    parts: impl Iterator<Item = Result<Vec<u8>, Failure>>,
) -> Result<(), Failure> {
    let (tmp, f) = temp_beside(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "{header}").map_err(io(path))?;
    for p in parts {
        w.write_all(&p?).map_err(io(path))?;
    }
    let f = w.into_inner().map_err(|e| io(path)(e.into_error()))?;
    f.sync_all().map_err(io(path))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Remove the temporary files that writes interrupted by a kill left in `dir`.
fn remove_leftovers(dir: &Path) -> Result<(), Failure> {
    if !dir.exists() {
        return Ok(());
    }
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
        {
            fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Chunks of an output, each written atomically to `<out>/chunks/`, with the manifest that
/// defines the work (a resumed run must match it) and the invocations so far.
struct ChunkStore {
    dir: PathBuf,
}

impl ChunkStore {
    const MANIFEST: &'static str = "manifest.json";
    const INVOCATIONS: &'static str = "invocations.json";

    fn at(out: &Path) -> ChunkStore {
        ChunkStore {
            dir: out.join("chunks"),
        }
    }

    /// The stored manifest of an interrupted run, if any.
    fn manifest(&self) -> Result<Option<Value>, Failure> {
        let path = self.dir.join(Self::MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
    }

    /// Start a new store (removing any previous one) with `manifest`.
    fn create(&self, manifest: &Value) -> Result<(), Failure> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(io(&self.dir))?;
        }
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(Self::MANIFEST);
        write_atomic(&path, manifest.to_string().as_bytes()).map_err(io(&path))
    }

    fn invocations(&self) -> Result<Vec<Invocation>, Failure> {
        let path = self.dir.join(Self::INVOCATIONS);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
    }

    fn set_invocations(&self, list: &[Invocation]) -> Result<(), Failure> {
        let path = self.dir.join(Self::INVOCATIONS);
        let text = serde_json::to_string(list).expect("invocations serialize");
        write_atomic(&path, text.as_bytes()).map_err(io(&path))
    }

    fn path(&self, index: usize, part: &str) -> PathBuf {
        self.dir.join(format!("{index:06}.{part}"))
    }

    /// Whether chunk `index` is complete (its `done` part, written last, exists).
    fn is_done(&self, index: usize) -> bool {
        self.path(index, "done").exists()
    }

    /// Store the tables' parts of chunk `index` atomically, then mark it done.
    fn write(&self, index: usize, parts: &[Vec<u8>]) -> Result<(), Failure> {
        for (t, bytes) in parts.iter().enumerate() {
            let path = self.path(index, &format!("t{t}"));
            write_atomic(&path, bytes).map_err(io(&path))?;
        }
        let path = self.path(index, "done");
        write_atomic(&path, b"").map_err(io(&path))
    }

    /// Table `table`'s part of chunk `index`.
    fn read(&self, index: usize, table: usize) -> Result<Vec<u8>, Failure> {
        let path = self.path(index, &format!("t{table}"));
        fs::read(&path).map_err(io(&path))
    }

    fn remove(self) -> Result<(), Failure> {
        fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }
}

/// The advisory lock on an output directory, held for the life of the value (and released by
/// the OS if the process dies).
struct OutLock {
    _file: fs::File,
}

impl OutLock {
    fn take(out: &Path) -> Result<OutLock, Failure> {
        fs::create_dir_all(out).map_err(io(out))?;
        let path = out.join(".bptt.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(OutLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Failure::Failed(format!(
                "another run is writing into {} (it holds {}): wait for it to finish, or use \
                 another --out",
                out.display(),
                path.display()
            ))),
            Err(fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }
}

/// What one invocation is: its command line, arguments and environment.
struct Invoked {
    arguments: Value,
    threads: usize,
    start_time: String,
    clock: Instant,
    quiet: bool,
}

impl Invoked {
    fn record(&self, shard: Shard, chunks_computed: usize, finished: bool) -> Invocation {
        Invocation {
            command_line: std::env::args().collect(),
            arguments: self.arguments.clone(),
            build: Build::current(),
            host: Host::current(),
            threads: self.threads,
            shard,
            start_time: self.start_time.clone(),
            end_time: finished.then(now_rfc3339),
            wall_seconds: finished.then(|| self.clock.elapsed().as_secs_f64()),
            chunks_computed,
        }
    }
}

/// Run an experiment binary: `build` turns the parsed flags into the experiment (every flag
/// validated, the plan's size checked) after the thread pool is set up; then compute (or, with
/// `--merge`, merge), assemble, write the sidecar and print the summary. The exit status
/// follows [`Failure::code`].
pub fn drive<E: Experiment>(
    common: &CommonArgs,
    shard: Option<&ShardArgs>,
    arguments: &impl Serialize,
    build: impl FnOnce() -> Result<E, String>,
) -> std::process::ExitCode {
    let result = (|| {
        let threads = common
            .init_threads()
            .map_err(|e| Failure::Usage(e.to_string()))?;
        let invoked = Invoked {
            arguments: serde_json::to_value(arguments).expect("arguments serialize"),
            threads,
            start_time: now_rfc3339(),
            clock: Instant::now(),
            quiet: common.quiet,
        };
        let out = common.out_dir(E::NAME);
        if let Some(s) = shard.filter(|s| !s.merge.is_empty()) {
            return merge::<E>(&s.merge, &out, &invoked);
        }
        let experiment = build().map_err(Failure::Usage)?;
        let shard = shard.map_or(Shard::WHOLE, |s| s.shard);
        run(&experiment, &out, shard, common.resume, &invoked)
    })();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            let (Failure::Usage(msg) | Failure::Failed(msg)) = &f;
            eprintln!("error: {msg}");
            std::process::ExitCode::from(f.code())
        }
    }
}

/// Remove what a previous run left in `out`: its tables and sidecar, the experiment's output
/// directories and any chunks.
fn clear_outputs<E: Experiment>(experiment: &E, out: &Path) -> Result<(), Failure> {
    let mut files: Vec<String> = experiment.tables().into_iter().map(|t| t.file).collect();
    if let Some(prev) = Sidecar::read(out, E::NAME).ok().flatten() {
        files.extend(prev.outputs);
    }
    files.push(Sidecar::file_name(E::NAME));
    for f in files {
        let p = out.join(&f);
        if p.is_file() {
            fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    for d in E::OUTPUT_DIRS.iter().chain(&["chunks"]) {
        let p = out.join(d);
        if p.is_dir() {
            fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

fn run<E: Experiment>(
    experiment: &E,
    out: &Path,
    shard: Shard,
    resume: bool,
    invoked: &Invoked,
) -> Result<(), Failure> {
    let plan = experiment.plan();
    let manifest = serde_json::json!({ "experiment": E::NAME, "plan": plan, "shard": shard });
    let _lock = OutLock::take(out)?;
    let store = ChunkStore::at(out);
    let mut invocations = Vec::new();
    let mut fresh = true;
    if resume {
        match store.manifest()? {
            Some(stored) if stored == manifest => {
                fresh = false;
                invocations = store.invocations()?;
            }
            Some(stored) => {
                return Err(Failure::Usage(format!(
                    "--resume: the interrupted run in {} was started with different arguments:\n  \
                     stored:  {stored}\n  current: {manifest}",
                    out.display()
                )));
            }
            None => match Sidecar::read(out, E::NAME)? {
                Some(mut done) if done.plan == plan && done.shard == shard => {
                    eprintln!(
                        "nothing to do: {} holds a finished run of this plan (shard {shard}); \
                         the sidecar records this invocation",
                        out.display()
                    );
                    done.invocations.push(invoked.record(shard, 0, true));
                    return done.write(out);
                }
                Some(_) => {
                    return Err(Failure::Usage(format!(
                        "--resume: {} holds a finished run with different arguments (see its \
                         {}); run without --resume to replace it",
                        out.display(),
                        Sidecar::file_name(E::NAME)
                    )));
                }
                None => eprintln!(
                    "--resume: no interrupted run in {}: starting a fresh run",
                    out.display()
                ),
            },
        }
    }
    if fresh {
        clear_outputs(experiment, out)?;
        store.create(&manifest)?;
    }
    remove_leftovers(&store.dir)?;
    for d in E::OUTPUT_DIRS {
        remove_leftovers(&out.join(d))?;
        fs::create_dir_all(out.join(d)).map_err(io(&out.join(d)))?;
    }
    // this invocation is on record from its start: a kill leaves it without an end time
    invocations.push(invoked.record(shard, 0, false));
    store.set_invocations(&invocations)?;

    let chunks = experiment.chunks();
    let mine = shard.range(chunks);
    let todo: Vec<usize> = mine.clone().filter(|&i| !store.is_done(i)).collect();
    let bar = progress_bar::<E>(
        invoked.quiet,
        todo.iter().map(|&i| experiment.units(i)).sum(),
    );
    let ctx = Context { out, bar: &bar };
    let compute = |i: usize| -> Result<(), Failure> {
        let rows = experiment
            .compute(i, &ctx)
            .map_err(|e| Failure::Failed(format!("chunk {i}: {e}")))?;
        store.write(i, &rows.into_parts())
    };
    if experiment.parallel_chunks() {
        // handed out in plan order as workers come free (not split into halves), so an
        // interrupted run has finished a prefix of its plan (up to the chunks in flight): a
        // plan listed most-important-first gets its important chunks done first
        todo.iter().par_bridge().try_for_each(|&i| compute(i))?;
    } else {
        todo.iter().try_for_each(|&i| compute(i))?;
    }
    bar.finish_and_clear();

    let tables = experiment.tables();
    for (t, table) in tables.iter().enumerate() {
        assemble(
            &out.join(&table.file),
            &table.header,
            mine.clone().map(|i| store.read(i, t)),
        )?;
    }
    let last = invocations.len() - 1;
    invocations[last] = invoked.record(shard, todo.len(), true);
    let summary = E::summarize(&plan, &Outputs { dir: out }).map_err(Failure::Failed)?;
    let sidecar = sidecar(
        E::NAME,
        plan,
        shard,
        [mine.start, mine.end, chunks],
        tables.iter().map(|t| t.file.clone()).collect(),
        invocations,
        Vec::new(),
        summary.results,
    );
    sidecar.write(out)?;
    store.remove()?;
    if !invoked.quiet && mine.len() == chunks {
        println!("{}", summary.table);
    }
    eprintln!(
        "wall_seconds={:.3} chunks_computed={} of {} threads={} out={}",
        invoked.clock.elapsed().as_secs_f64(),
        todo.len(),
        mine.len(),
        invoked.threads,
        out.display()
    );
    summary.failure.map_or(Ok(()), |f| Err(Failure::Failed(f)))
}

#[allow(clippy::too_many_arguments)]
fn sidecar(
    experiment: &str,
    plan: Value,
    shard: Shard,
    [start, end, chunks]: [usize; 3],
    outputs: Vec<String>,
    invocations: Vec<Invocation>,
    merged_from: Vec<PathBuf>,
    results: Value,
) -> Sidecar {
    let last = invocations.last().expect("the current invocation").clone();
    Sidecar {
        experiment: experiment.to_string(),
        crate_version: last.build.crate_version,
        git_commit: last.build.git_commit,
        git_dirty: last.build.git_dirty,
        arguments: last.arguments,
        plan,
        shard,
        chunks,
        chunk_range: [start, end],
        threads: last.threads,
        host: last.host,
        start_time: invocations[0].start_time.clone(),
        end_time: last.end_time.unwrap_or_default(),
        wall_seconds: invocations.iter().filter_map(|i| i.wall_seconds).sum(),
        outputs,
        merged_from,
        invocations,
        results,
    }
}

fn progress_bar<E: Experiment>(quiet: bool, units: u64) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(units);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {}, eta {{eta}}",
            E::UNIT
        ))
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// `--merge`: the outputs of shards `1/N … N/N` of one plan (in order, each finished) into `out`.
fn merge<E: Experiment>(dirs: &[PathBuf], out: &Path, invoked: &Invoked) -> Result<(), Failure> {
    let usage = |m: String| Failure::Usage(format!("--merge: {m}"));
    let mut sidecars = Vec::new();
    for d in dirs {
        let s = Sidecar::read(d, E::NAME)?.ok_or_else(|| {
            usage(format!(
                "{} holds no finished {} output (no {})",
                d.display(),
                E::NAME,
                Sidecar::file_name(E::NAME)
            ))
        })?;
        sidecars.push(s);
    }
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let first = &sidecars[0];
    let n = first.shard.n;
    if n == 1 {
        return Err(usage(format!(
            "{} holds a full run (shard 1/1): there is nothing to merge it with",
            dirs[0].display()
        )));
    }
    if dirs.len() != n {
        return Err(usage(format!(
            "{} holds shard {} of {n}: the merge needs all {n} shards 1/{n} … {n}/{n}, in \
             order; got {} directories",
            dirs[0].display(),
            first.shard,
            dirs.len()
        )));
    }
    for (i, (d, s)) in dirs.iter().zip(&sidecars).enumerate() {
        if s.plan != first.plan {
            return Err(usage(format!(
                "{} was run with a different plan than {}:\n  {}\n  {}",
                d.display(),
                dirs[0].display(),
                s.plan,
                first.plan
            )));
        }
        if s.shard != (Shard { k: i + 1, n }) {
            return Err(usage(format!(
                "{} holds shard {}, but position {} needs shard {}/{n} (give the shards once \
                 each, in order)",
                d.display(),
                s.shard,
                i + 1,
                i + 1
            )));
        }
        if s.outputs != first.outputs {
            return Err(usage(format!(
                "{} has other tables than {}",
                d.display(),
                dirs[0].display()
            )));
        }
        if canonical(d) == canonical(out) {
            return Err(usage(format!(
                "--out {} is one of the shards",
                out.display()
            )));
        }
    }
    let _lock = OutLock::take(out)?;
    // a fresh output: the previous tables and sidecar in `out` go
    if let Some(prev) = Sidecar::read(out, E::NAME).ok().flatten() {
        for f in prev.outputs.iter().chain([&Sidecar::file_name(E::NAME)]) {
            let p = out.join(f);
            if p.is_file() {
                fs::remove_file(&p).map_err(io(&p))?;
            }
        }
    }
    for file in &first.outputs {
        let mut header: Option<String> = None;
        let mut bodies = Vec::new();
        for d in dirs {
            let path = d.join(file);
            let text = fs::read(&path).map_err(io(&path))?;
            let split = text
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |p| p + 1);
            let (h, body) = text.split_at(split);
            let h = String::from_utf8_lossy(h).trim_end().to_string();
            match &header {
                None => header = Some(h),
                Some(first) if *first != h => {
                    return Err(usage(format!(
                        "{}: another header than the first shard's",
                        path.display()
                    )));
                }
                Some(_) => {}
            }
            bodies.push(body.to_vec());
        }
        let header = header.unwrap_or_default();
        assemble(&out.join(file), &header, bodies.into_iter().map(Ok))?;
    }
    // other output directories (models): the union of the shards', names never repeated
    let mut copied = std::collections::BTreeSet::new();
    for d in dirs {
        for &sub in E::OUTPUT_DIRS {
            let src = d.join(sub);
            if !src.is_dir() {
                continue;
            }
            let dst = out.join(sub);
            fs::create_dir_all(&dst).map_err(io(&dst))?;
            for e in fs::read_dir(&src).map_err(io(&src))? {
                let p = e.map_err(io(&src))?.path();
                let name = p.file_name().unwrap_or_default().to_owned();
                if !copied.insert((sub, name.clone())) {
                    return Err(usage(format!("{} appears in two shards", p.display())));
                }
                fs::copy(&p, dst.join(&name)).map_err(io(&p))?;
            }
        }
    }
    let plan = first.plan.clone();
    let chunks = first.chunks;
    let mut invocations: Vec<Invocation> = sidecars
        .iter()
        .flat_map(|s| s.invocations.clone())
        .collect();
    invocations.push(invoked.record(Shard::WHOLE, 0, true));
    let summary = E::summarize(&plan, &Outputs { dir: out }).map_err(Failure::Failed)?;
    let sidecar = sidecar(
        E::NAME,
        plan,
        Shard::WHOLE,
        [0, chunks, chunks],
        first.outputs.clone(),
        invocations,
        dirs.to_vec(),
        summary.results,
    );
    sidecar.write(out)?;
    if !invoked.quiet {
        println!("{}", summary.table);
    }
    eprintln!("merged {} shards into {}", dirs.len(), out.display());
    summary.failure.map_or(Ok(()), |f| Err(Failure::Failed(f)))
}

/// The current UTC time as RFC 3339 (`2026-11-27T12:34:56Z`).
#[must_use]
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
        assert_eq!(
            serde_json::to_value(Shard { k: 2, n: 8 }).unwrap(),
            serde_json::json!("2/8")
        );
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

    #[derive(Serialize, Default)]
    struct Row {
        cell: String,
        rho: f64,
        k: usize,
    }

    #[test]
    fn a_table_header_is_its_row_type_s_field_names() {
        assert_eq!(Table::of::<Row>("x.csv").header, "cell,rho,k");
        let mut rows = Rows::new(1);
        rows.push(
            0,
            &Row {
                cell: "lstm".into(),
                rho: f64::NAN,
                k: 3,
            },
        );
        assert_eq!(rows.into_parts()[0], b"lstm,NaN,3\n");
    }
}
