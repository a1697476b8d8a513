//! The real data sets as `scripts/fetch-data.sh` exports them into `data/` (formats:
//! `scripts/export_data.py`), read with every file checked against the export's manifest:
//! Penn Treebank as character ids ([`ptb_chars`]) or word ids ([`ptb_words`]), the Bach
//! chorales as piano rolls ([`chorales`]).
//!
//! Every failure is a [`DataError`] that names the file and says what to do: no export
//! (`manifest.json` missing: run the script), a file whose size or SHA-256 differs from the
//! manifest (modified or truncated after the export), a symbol outside the vocabulary (with its
//! line and column), a malformed piano roll.
//!
//! ```no_run
//! let ptb = bptt::experiment::data::ptb_chars(std::path::Path::new("data")).unwrap();
//! println!("{} symbols, {} training characters", ptb.symbols.len(), ptb.train.len());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// What can go wrong reading an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataError {
    /// `data/manifest.json` is absent: nothing was exported (or the export did not finish).
    NoExport { dir: PathBuf },
    /// A file could not be read, or the manifest could not be parsed.
    Io { path: PathBuf, message: String },
    /// A file is not the one the manifest lists.
    Checksum {
        path: PathBuf,
        expected: String,
        got: String,
    },
    /// A token outside the vocabulary.
    Symbol {
        path: PathBuf,
        line: usize,
        column: usize,
        symbol: String,
    },
    /// A malformed line of a piano roll or vocabulary.
    Format {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::NoExport { dir } => write!(
                f,
                "{}: no exported data (manifest.json is missing): run scripts/fetch-data.sh",
                dir.display()
            ),
            DataError::Io { path, message } => write!(f, "{}: {message}", path.display()),
            DataError::Checksum {
                path,
                expected,
                got,
            } => write!(
                f,
                "{}: {got}, the manifest lists {expected}: the file changed after the export; \
                 run scripts/fetch-data.sh again",
                path.display()
            ),
            DataError::Symbol {
                path,
                line,
                column,
                symbol,
            } => write!(
                f,
                "{}:{line}:{column}: {symbol:?} is not in the vocabulary",
                path.display()
            ),
            DataError::Format {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
        }
    }
}

impl std::error::Error for DataError {}

/// The export's manifest: every file's size and SHA-256, by path relative to the data folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub dir: PathBuf,
    pub files: BTreeMap<String, (u64, String)>,
}

#[derive(serde::Deserialize)]
struct ManifestFile {
    files: BTreeMap<String, ManifestEntry>,
}

#[derive(serde::Deserialize)]
struct ManifestEntry {
    sha256: String,
    bytes: u64,
}

impl Manifest {
    /// Read `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, DataError> {
        let path = dir.join("manifest.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::NoExport { dir: dir.into() });
            }
            Err(e) => {
                return Err(DataError::Io {
                    path,
                    message: e.to_string(),
                });
            }
        };
        let m: ManifestFile = serde_json::from_str(&text).map_err(|e| DataError::Io {
            path: path.clone(),
            message: format!("not an export manifest: {e}"),
        })?;
        Ok(Manifest {
            dir: dir.into(),
            files: m
                .files
                .into_iter()
                .map(|(k, v)| (k, (v.bytes, v.sha256)))
                .collect(),
        })
    }

    /// The text of `rel` (a path relative to the data folder), after checking its size and
    /// SHA-256 against the manifest.
    pub fn read(&self, rel: &str) -> Result<String, DataError> {
        let path = self.dir.join(rel);
        let (bytes, sha) = self.files.get(rel).ok_or_else(|| DataError::Io {
            path: path.clone(),
            message: "not listed in manifest.json: run scripts/fetch-data.sh".into(),
        })?;
        let data = std::fs::read(&path).map_err(|e| DataError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let got = sha256_hex(&data);
        if data.len() as u64 != *bytes || got != *sha {
            return Err(DataError::Checksum {
                path,
                expected: format!("{bytes} bytes, SHA-256 {sha}"),
                got: format!("{} bytes, SHA-256 {got}", data.len()),
            });
        }
        String::from_utf8(data).map_err(|e| DataError::Io {
            path,
            message: format!("not UTF-8: {e}"),
        })
    }
}

/// Lower-case hex SHA-256 of `data`.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The three splits of PTB as ids into `symbols`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corpus {
    /// The vocabulary: id `i` is `symbols[i]`.
    pub symbols: Vec<String>,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
}

/// The vocabulary file `rel` (one symbol per line) as (symbols, id of each).
fn vocabulary(m: &Manifest, rel: &str) -> Result<(Vec<String>, HashMap<String, usize>), DataError> {
    let text = m.read(rel)?;
    let symbols: Vec<String> = text.lines().map(String::from).collect();
    let mut ids = HashMap::new();
    for (i, s) in symbols.iter().enumerate() {
        if s.is_empty() || ids.insert(s.clone(), i).is_some() {
            return Err(DataError::Format {
                path: m.dir.join(rel),
                line: i + 1,
                message: format!("empty or repeated symbol {s:?}"),
            });
        }
    }
    Ok((symbols, ids))
}

/// The end-of-line symbol of the character vocabulary, and the word-level end of sentence.
pub const EOL: &str = "<eol>";
pub const EOS: &str = "<eos>";

/// PTB at the character level: every character of the text — each line's leading space
/// included — with a space as `_` and each line end as [`EOL`]: ids into `ptb/chars.txt` (50
/// symbols; train 5,101,618 characters, valid 399,782, test 449,945).
pub fn ptb_chars(dir: &Path) -> Result<Corpus, DataError> {
    let m = Manifest::load(dir)?;
    let (symbols, ids) = vocabulary(&m, "ptb/chars.txt")?;
    // the text's character of each symbol: `_` stands for a space, <eol> for a line end
    let by_char: HashMap<char, usize> = ids
        .iter()
        .filter_map(|(s, &i)| match s.as_str() {
            EOL => Some(('\n', i)),
            "_" => Some((' ', i)),
            s => {
                let mut cs = s.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Some((c, i)),
                    _ => None,
                }
            }
        })
        .collect();
    let encode = |split: &str| -> Result<Vec<usize>, DataError> {
        let rel = format!("ptb/{split}.txt");
        let text = m.read(&rel)?;
        let mut out = Vec::with_capacity(text.len());
        for (l, line) in text.split_inclusive('\n').enumerate() {
            for (c, ch) in line.chars().enumerate() {
                out.push(*by_char.get(&ch).ok_or_else(|| DataError::Symbol {
                    path: m.dir.join(&rel),
                    line: l + 1,
                    column: c + 1,
                    symbol: ch.to_string(),
                })?);
            }
        }
        Ok(out)
    };
    Ok(Corpus {
        train: encode("train")?,
        valid: encode("valid")?,
        test: encode("test")?,
        symbols,
    })
}

/// PTB at the word level: the words of each line, then [`EOS`] — ids into `ptb/words.txt`
/// (10,000 symbols; train 929,589 tokens, valid 73,760, test 82,430).
pub fn ptb_words(dir: &Path) -> Result<Corpus, DataError> {
    let m = Manifest::load(dir)?;
    let (symbols, ids) = vocabulary(&m, "ptb/words.txt")?;
    let eos = *ids.get(EOS).ok_or_else(|| DataError::Format {
        path: m.dir.join("ptb/words.txt"),
        line: symbols.len(),
        message: format!("no {EOS} symbol"),
    })?;
    let encode = |split: &str| -> Result<Vec<usize>, DataError> {
        let rel = format!("ptb/{split}.txt");
        let text = m.read(&rel)?;
        let mut out = Vec::new();
        for (l, line) in text.lines().enumerate() {
            for (c, w) in line.split_whitespace().enumerate() {
                out.push(*ids.get(w).ok_or_else(|| DataError::Symbol {
                    path: m.dir.join(&rel),
                    line: l + 1,
                    column: c + 1,
                    symbol: w.into(),
                })?);
            }
            out.push(eos);
        }
        Ok(out)
    };
    Ok(Corpus {
        train: encode("train")?,
        valid: encode("valid")?,
        test: encode("test")?,
        symbols,
    })
}

/// The lowest and highest MIDI pitch of the piano rolls: 88 channels, pitch `p` is channel
/// `p − LOWEST_PITCH`.
pub const LOWEST_PITCH: u8 = 21;
pub const HIGHEST_PITCH: u8 = 108;
/// Channels of a piano roll.
pub const PITCHES: usize = (HIGHEST_PITCH - LOWEST_PITCH + 1) as usize;

/// One chorale: its corpus path and, per quarter-note step, the channels sounding (ascending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PianoRoll {
    pub name: String,
    pub steps: Vec<Vec<u8>>,
}

/// The chorales' three splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chorales {
    pub train: Vec<PianoRoll>,
    pub valid: Vec<PianoRoll>,
    pub test: Vec<PianoRoll>,
}

/// The Bach chorales as piano rolls (`chorales/{train,valid,test}.txt`).
pub fn chorales(dir: &Path) -> Result<Chorales, DataError> {
    let m = Manifest::load(dir)?;
    let split = |s: &str| {
        let rel = format!("chorales/{s}.txt");
        parse_rolls(&m.read(&rel)?, &m.dir.join(&rel))
    };
    Ok(Chorales {
        train: split("train")?,
        valid: split("valid")?,
        test: split("test")?,
    })
}

/// Parse the piano-roll format of `scripts/export_data.py`: per chorale a line
/// `# <name> <steps>`, `steps` lines of ascending MIDI pitches (empty: a rest), a line `.`.
/// Channels are pitch − [`LOWEST_PITCH`].
pub fn parse_rolls(text: &str, path: &Path) -> Result<Vec<PianoRoll>, DataError> {
    let err = |line: usize, message: String| DataError::Format {
        path: path.into(),
        line,
        message,
    };
    let mut rolls = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((n, header)) = lines.next() {
        let mut head = header
            .strip_prefix("# ")
            .ok_or_else(|| err(n, format!("expected '# <name> <steps>', got {header:?}")))?
            .split(' ');
        let (name, steps) = match (head.next(), head.next(), head.next()) {
            (Some(name), Some(k), None) => (
                name.to_string(),
                k.parse::<usize>()
                    .map_err(|_| err(n, format!("{k:?} is not a step count")))?,
            ),
            _ => {
                return Err(err(
                    n,
                    format!("expected '# <name> <steps>', got {header:?}"),
                ));
            }
        };
        let mut roll = Vec::with_capacity(steps);
        for _ in 0..steps {
            let (n, line) = lines
                .next()
                .ok_or_else(|| err(n, format!("{name}: the file ends before its {steps} steps")))?;
            let mut step = Vec::new();
            for p in line.split_whitespace() {
                let pitch: u8 = p
                    .parse()
                    .map_err(|_| err(n, format!("{name}: {p:?} is not a MIDI pitch")))?;
                if !(LOWEST_PITCH..=HIGHEST_PITCH).contains(&pitch) {
                    return Err(err(
                        n,
                        format!(
                            "{name}: pitch {pitch} is outside {LOWEST_PITCH}..={HIGHEST_PITCH}"
                        ),
                    ));
                }
                let channel = pitch - LOWEST_PITCH;
                if step.last().is_some_and(|&last| last >= channel) {
                    return Err(err(n, format!("{name}: pitches must ascend: {line:?}")));
                }
                step.push(channel);
            }
            roll.push(step);
        }
        match lines.next() {
            Some((_, ".")) => {}
            Some((n, l)) => {
                return Err(err(
                    n,
                    format!("{name}: expected '.' after {steps} steps, got {l:?}"),
                ));
            }
            None => return Err(err(n, format!("{name}: no closing '.'"))),
        }
        rolls.push(PianoRoll { name, steps: roll });
    }
    Ok(rolls)
}
