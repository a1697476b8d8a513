//! The real-data readers (`bptt::experiment::data`) on tiny exports written here: ids as the
//! character and word conventions define them, piano rolls as the format defines them, and a
//! clear error for each way an export can be wrong — none, a changed file, an unknown symbol, a
//! malformed roll. (The real export is checked by `scripts/export_data.py` against
//! `scripts/data.sha256`; these tests do not need it.)

mod cli;

use std::path::{Path, PathBuf};

use bptt::experiment::data::{
    DataError, LOWEST_PITCH, Manifest, PITCHES, chorales, parse_rolls, ptb_chars, ptb_words,
    sha256_hex,
};

/// A fresh folder holding `files` and their manifest.
fn export(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bptt-data-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cli::write_export(&dir, files);
    dir
}

fn ptb(tag: &str, train: &str) -> PathBuf {
    export(
        tag,
        &[
            ("ptb/train.txt", train),
            ("ptb/valid.txt", " b a \n"),
            ("ptb/test.txt", " a \n"),
            ("ptb/chars.txt", "_\na\nb\n<eol>\nc\n"),
            ("ptb/words.txt", "a\nb\nc\n<eos>\n"),
        ],
    )
}

#[test]
fn sha256_matches_the_standard_test_vectors() {
    // FIPS 180-2 examples
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn characters_follow_mikolovs_convention() {
    let dir = ptb("chars", " a b \n c\n");
    let c = ptb_chars(&dir).unwrap();
    assert_eq!(c.symbols, ["_", "a", "b", "<eol>", "c"]);
    // space → `_`, line end → <eol>, every character one id
    assert_eq!(c.train, [0, 1, 0, 2, 0, 3, 0, 4, 3]);
    assert_eq!(c.valid, [0, 2, 0, 1, 0, 3]);
    assert_eq!(c.test, [0, 1, 0, 3]);
}

#[test]
fn words_end_each_line_with_eos() {
    let dir = ptb("words", " a b \n c\n");
    let w = ptb_words(&dir).unwrap();
    assert_eq!(w.symbols, ["a", "b", "c", "<eos>"]);
    assert_eq!(w.train, [0, 1, 3, 2, 3]);
    assert_eq!(w.valid, [1, 0, 3]);
    assert_eq!(w.test, [0, 3]);
}

#[test]
fn no_export_says_to_run_the_script() {
    let dir = std::env::temp_dir().join(format!("bptt-data-{}-none", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let e = ptb_chars(&dir).unwrap_err();
    assert_eq!(e, DataError::NoExport { dir: dir.clone() });
    assert!(e.to_string().contains("run scripts/fetch-data.sh"), "{e}");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("manifest.json"), "{ not json").unwrap();
    let e = Manifest::load(&dir).unwrap_err().to_string();
    assert!(e.contains("manifest.json: not an export manifest"), "{e}");
}

#[test]
fn a_file_changed_after_the_export_is_refused() {
    let dir = ptb("changed", " a \n");
    // same length, other content
    std::fs::write(dir.join("ptb/test.txt"), " b \n").unwrap();
    let e = ptb_chars(&dir).unwrap_err();
    assert!(matches!(e, DataError::Checksum { ref path, .. } if path.ends_with("ptb/test.txt")));
    assert!(
        e.to_string().contains("the file changed after the export"),
        "{e}"
    );
    // truncated
    std::fs::write(dir.join("ptb/test.txt"), " a").unwrap();
    let e = ptb_words(&dir).unwrap_err().to_string();
    assert!(
        e.contains("2 bytes") && e.contains("manifest lists 4 bytes"),
        "{e}"
    );
    // missing
    std::fs::remove_file(dir.join("ptb/test.txt")).unwrap();
    let e = ptb_words(&dir).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
}

#[test]
fn an_unknown_symbol_is_named_with_its_position() {
    let dir = ptb("unknown", " a \n a d\n");
    let e = ptb_chars(&dir).unwrap_err();
    assert_eq!(
        e,
        DataError::Symbol {
            path: dir.join("ptb/train.txt"),
            line: 2,
            column: 4,
            symbol: "d".into()
        }
    );
    let e = ptb_words(&dir).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("train.txt:2:2: \"d\" is not in the vocabulary"),
        "{e}"
    );
}

const TWO: &str = "# bach/x 3\n60 64 67\n\n62\n.\n# bach/y 1\n21 108\n.\n";

#[test]
fn piano_rolls_parse_to_channels() {
    let rolls = parse_rolls(TWO, Path::new("t.txt")).unwrap();
    assert_eq!(rolls.len(), 2);
    assert_eq!(rolls[0].name, "bach/x");
    let ch = |p: u8| p - LOWEST_PITCH;
    assert_eq!(
        rolls[0].steps,
        [vec![ch(60), ch(64), ch(67)], vec![], vec![ch(62)]]
    );
    // the lowest and highest piano keys are channels 0 and 87
    assert_eq!(rolls[1].steps, [vec![0, (PITCHES - 1) as u8]]);
    let dir = export(
        "rolls",
        &[
            ("chorales/train.txt", TWO),
            ("chorales/valid.txt", ""),
            ("chorales/test.txt", "# bach/z 0\n.\n"),
        ],
    );
    let c = chorales(&dir).unwrap();
    assert_eq!((c.train.len(), c.valid.len(), c.test.len()), (2, 0, 1));
    assert!(c.test[0].steps.is_empty());
}

#[test]
fn malformed_piano_rolls_are_errors_with_their_line() {
    for (text, line, needle) in [
        ("bach/x 1\n60\n.\n", 1, "expected '# <name> <steps>'"),
        ("# bach/x one\n60\n.\n", 1, "\"one\" is not a step count"),
        ("# bach/x 2\n60\n", 1, "the file ends before its 2 steps"),
        ("# bach/x 1\n60\n", 1, "no closing '.'"),
        ("# bach/x 1\n60\n62\n", 3, "expected '.' after 1 steps"),
        ("# bach/x 1\n20\n.\n", 2, "pitch 20 is outside 21..=108"),
        ("# bach/x 1\n109\n.\n", 2, "pitch 109 is outside"),
        ("# bach/x 1\n64 60\n.\n", 2, "pitches must ascend"),
        ("# bach/x 1\n60 60\n.\n", 2, "pitches must ascend"),
        ("# bach/x 1\nC4\n.\n", 2, "\"C4\" is not a MIDI pitch"),
    ] {
        let e = parse_rolls(text, Path::new("r.txt")).unwrap_err();
        let DataError::Format { line: l, .. } = &e else {
            panic!("{text:?}: {e:?}")
        };
        assert_eq!(*l, line, "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
        assert!(e.to_string().starts_with(&format!("r.txt:{line}: ")), "{e}");
    }
}
