//! The bidirectional tagging task (`bptt::experiment::bidirectional`) and the `bidirectional`
//! binary as a researcher uses it: every label is what the task says it is, the probes'
//! polarities are fair coins, the chance level is the majority rate; output schemas, the
//! sidecar, determinism across thread counts and shards, resume after `kill -9`, bad flags.

mod cli;

use std::path::Path;

use approx::assert_relative_eq;
use bptt::experiment::bidirectional::{
    ADJECTIVES, ANAPHORS, Dependency, FIRST_ANAPHOR, FIRST_INTENSIFIER, FIRST_NEGATIVE,
    FIRST_POSITIVE, INTENSIFIERS, NEGATIVE, NEUTRAL, POSITIVE, Probe, VOCAB, chance_accuracy,
    generate, min_length,
};
use bptt::rng::stream;
use cli::read;

const BIN: &str = env!("CARGO_BIN_EXE_bidirectional");

/// The label a token carries by itself: polarity for adjectives, neutral for fillers, `None`
/// for the dependent tokens.
fn own_label(token: usize) -> Option<usize> {
    match token {
        t if t < FIRST_POSITIVE => Some(NEUTRAL),
        t if t < FIRST_NEGATIVE => Some(POSITIVE),
        t if t < FIRST_NEGATIVE + ADJECTIVES => Some(NEGATIVE),
        _ => None,
    }
}

#[test]
fn every_label_is_the_one_the_task_defines() {
    let (batch, steps, dmax) = (300, 24, 11);
    let s = generate(&mut stream(3, &[]), batch, steps, dmax).unwrap();
    assert_eq!(
        (s.tokens.len(), s.labels.len()),
        (batch * steps, batch * steps)
    );
    assert_eq!(s.probes.len(), 2 * batch);
    let at = |t: usize, b: usize| s.tokens[t * batch + b];
    for b in 0..batch {
        let probes: Vec<&Probe> = s.probes.iter().filter(|p| p.sequence == b).collect();
        assert_eq!(probes.len(), 2);
        let mut dependent = 0;
        for t in 0..steps {
            let (token, label) = (at(t, b), s.labels[t * batch + b]);
            assert!(token < VOCAB);
            match own_label(token) {
                Some(l) => assert_eq!(label, l, "token {token} at step {t}"),
                None => {
                    dependent += 1;
                    let p = probes.iter().find(|p| p.step == t).expect("a probe here");
                    assert_eq!(p.label, label);
                    assert!((1..=dmax).contains(&p.distance));
                    // the partner: the adjective d steps later (intensifier) or earlier (anaphor)
                    let partner = match p.dependency {
                        Dependency::Right => {
                            assert!(
                                (FIRST_INTENSIFIER..FIRST_INTENSIFIER + INTENSIFIERS)
                                    .contains(&token)
                            );
                            at(t + p.distance, b)
                        }
                        Dependency::Left => {
                            assert!((FIRST_ANAPHOR..FIRST_ANAPHOR + ANAPHORS).contains(&token));
                            at(t - p.distance, b)
                        }
                    };
                    assert!(matches!(own_label(partner), Some(POSITIVE | NEGATIVE)));
                    assert_eq!(own_label(partner), Some(label));
                }
            }
        }
        assert_eq!(
            dependent, 2,
            "sequence {b}: one intensifier and one anaphor"
        );
        // exactly two adjectives: the two partners, nothing else polar
        let polar = (0..steps)
            .filter(|&t| matches!(own_label(at(t, b)), Some(POSITIVE | NEGATIVE)))
            .count();
        assert_eq!(polar, 2);
    }
}

#[test]
fn polarities_are_fair_coins_and_distances_cover_the_range() {
    let (batch, dmax) = (20_000, 8);
    let s = generate(&mut stream(9, &[]), batch, min_length(dmax), dmax).unwrap();
    for dep in [Dependency::Right, Dependency::Left] {
        let probes: Vec<&Probe> = s.probes.iter().filter(|p| p.dependency == dep).collect();
        let positive = probes.iter().filter(|p| p.label == POSITIVE).count() as f64;
        let n = probes.len() as f64;
        // within 4 standard errors of ½
        assert!(
            (positive / n - 0.5).abs() < 4.0 * (0.25 / n).sqrt(),
            "{dep:?}: {positive} of {n}"
        );
        for d in 1..=dmax {
            let k = probes.iter().filter(|p| p.distance == d).count() as f64;
            assert!(
                (k / n - 1.0 / dmax as f64).abs() < 0.02,
                "{dep:?}: distance {d} has {k} of {n}"
            );
        }
    }
    // the shortest length fits both patterns at the largest distance: some sequence has both
    assert!(
        s.probes
            .chunks(2)
            .any(|p| p[0].distance == dmax && p[1].distance == dmax)
    );
}

#[test]
fn chance_is_the_majority_rate() {
    let probe = |label| Probe {
        sequence: 0,
        step: 0,
        dependency: Dependency::Right,
        distance: 1,
        label,
    };
    let probes: Vec<Probe> = [POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE]
        .into_iter()
        .map(probe)
        .collect();
    assert_relative_eq!(
        chance_accuracy(&probes),
        0.6,
        epsilon = 1e-15,
        max_relative = 1e-15
    );
    assert!(chance_accuracy(&[]).is_nan());
}

#[test]
fn bad_shapes_are_errors() {
    let rng = &mut stream(0, &[]);
    for (b, t, d) in [(0, 20, 4), (4, 9, 4), (4, 20, 0)] {
        let e = generate(rng, b, t, d).unwrap_err().to_string();
        assert!(e.contains("tagging sequences need"), "{e}");
    }
    assert!(generate(rng, 4, 10, 4).is_ok());
}

/// 2 cells × 2 directions × 2 seeds = 8 runs of seconds.
fn small(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "--out",
        dir.to_str().unwrap(),
        "--cells",
        "rnn-tanh,gru",
        "--seeds",
        "2",
        "--updates",
        "30",
        "--log-every",
        "10",
        "--hidden",
        "6",
        "--steps",
        "10",
        "--max-distance",
        "4",
        "--batch",
        "8",
        "--test-sequences",
        "60",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    cli::run_ok(BIN, &args);
}

#[test]
fn csv_schemas_and_sidecar() {
    let dir = cli::temp_dir("bidir", "schema");
    small(&dir, &[]);
    let acc = read(&dir, "accuracy.csv");
    let mut lines = acc.lines();
    assert_eq!(
        lines.next().unwrap(),
        "cell,direction,seed,dependency,distance,probes,correct,accuracy,chance"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // 8 runs × 2 dependencies × 4 distances
    assert_eq!(rows.len(), 8 * 2 * 4);
    assert_eq!(rows[0][..5], ["rnn-tanh", "uni", "0", "right", "1"]);
    // every run sees the same 60 probes of each dependency (one test set)
    for r in rows.chunks(8) {
        let probes: usize = r[..4].iter().map(|f| f[5].parse::<usize>().unwrap()).sum();
        assert_eq!(probes, 60);
    }
    for f in &rows {
        let (n, k): (f64, f64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
        assert_relative_eq!(
            f[7].parse::<f64>().unwrap(),
            k / n,
            epsilon = 1e-15,
            max_relative = 1e-15
        );
        let chance: f64 = f[8].parse().unwrap();
        assert!((0.5..=1.0).contains(&chance));
    }
    let runs = read(&dir, "runs.csv");
    assert_eq!(
        runs.lines().next().unwrap(),
        "cell,direction,seed,parameters,final_loss,right_accuracy,left_accuracy,local_accuracy,right_chance,left_chance"
    );
    let runs: Vec<Vec<&str>> = runs
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(runs.len(), 8);
    // a tanh RNN with H = 6 on 35 tokens: W_ih 6×35, W_hh 6×6, two biases, readout 3×6 + 3;
    // bidirectional: two cells and a readout over 12 units
    let uni = 6 * 35 + 6 * 6 + 2 * 6 + 3 * 6 + 3;
    let bi = 2 * (6 * 35 + 6 * 6 + 2 * 6) + 3 * 12 + 3;
    assert_eq!(runs[0][..4], ["rnn-tanh", "uni", "0", &uni.to_string()]);
    assert_eq!(runs[2][..4], ["rnn-tanh", "bi", "0", &bi.to_string()]);
    let curves = read(&dir, "curves.csv");
    assert_eq!(
        curves.lines().next().unwrap(),
        "cell,direction,seed,update,loss,grad_norm"
    );
    assert_eq!(curves.lines().count(), 1 + 8 * 3);
    let side: serde_json::Value = serde_json::from_str(&read(&dir, "bidirectional.json")).unwrap();
    assert_eq!(side["experiment"], "bidirectional");
    assert_eq!(side["results"]["runs"], 8);
    assert_eq!(side["plan"]["hyper"]["max_distance"], 4);
    assert_eq!(side["results"]["models"].as_array().unwrap().len(), 4);
    assert!(!dir.join("chunks").exists());
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    cli::assert_thread_and_shard_invariant(
        "bidir",
        &["accuracy.csv", "runs.csv", "curves.csv"],
        small,
    );
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        [
            "--out",
            dir.to_str().unwrap(),
            "--threads",
            "2",
            "--seeds",
            "6",
            "--updates",
            "300",
            "--hidden",
            "8",
            "--steps",
            "12",
            "--max-distance",
            "5",
            "--test-sequences",
            "50",
            "--quiet",
        ]
        .map(String::from)
        .to_vec()
    };
    cli::assert_resumes_after_kill(
        BIN,
        "bidir",
        args,
        (3, 120, "runs.csv"),
        &["accuracy.csv", "runs.csv", "curves.csv"],
    );
}

#[test]
fn bad_flags_exit_2_with_a_clear_message() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "bidir",
        &["--quiet"],
        &[
            (vec!["--cells", "elman"], "unknown cell 'elman'"),
            (vec!["--cells", "gru,gru"], "'gru' is listed twice"),
            (vec!["--directions", "left"], "unknown direction 'left'"),
            (vec!["--seeds", "0"], "--seeds must be at least 1"),
            (
                vec!["--max-distance", "0"],
                "--max-distance must be at least 1",
            ),
            (
                vec!["--steps", "20", "--max-distance", "10"],
                "--steps 20 is too short for --max-distance 10",
            ),
            (vec!["--lr", "0"], "--lr must be a positive number"),
            (vec!["--clip=-1"], "--clip must be a positive number"),
            (vec!["--dtype", "f16"], "unknown dtype 'f16'"),
            (vec!["--shard", "0/2"], "shard"),
            (
                vec!["--test-sequences", "18446744073709551615"],
                "this plan needs about",
            ),
        ],
    );
}
