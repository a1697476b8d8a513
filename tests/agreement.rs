//! Subject–verb agreement (`experiment::agreement`): the grammar's properties (labels, attractor
//! counts, distances, the subject's position, the preamble, the baselines, the vocabulary), the
//! trainer's recorded state gradients
//! that the gradient probe reads, and the `agreement` binary as a researcher runs it (CSV
//! schemas and sidecar, byte-identical output for any thread count and shard split, `kill -9`
//! + `--resume`, bad flags).

mod cli;

use std::path::Path;

use approx::assert_relative_eq;
use bptt::experiment::agreement::{
    self, Grammar, GrammarKind, ModelSpec, Number, RunSpec, Sentence, Sizing, Task, VOCAB,
    main_verb, noun_number,
};
use bptt::nn::arch::SeqLayer;
use bptt::nn::cells::CellKind;
use bptt::nn::engine::Inputs;
use bptt::train::trainer::{Batch, Config, ReadoutAt, Targets, Trainer};
use cli::read;

const BIN: &str = env!("CARGO_BIN_EXE_agreement");

fn rng(path: &[u64]) -> bptt::rng::Rng {
    bptt::rng::stream(7, path)
}

/// The nouns strictly between the subject and the verb, with their numbers, from the tokens.
fn intervening_nouns(s: &Sentence) -> Vec<Number> {
    s.tokens[s.subject + 1..s.verb]
        .iter()
        .filter_map(|&t| noun_number(t))
        .collect()
}

#[test]
fn labels_agree_with_the_subject_and_counts_and_distances_are_as_asked() {
    let g = Grammar::default();
    for a in 0..=5usize {
        for d in [3 * a, 3 * a + 1, 3 * a + 4, 3 * a + 11, 30] {
            if d < 3 * a {
                continue;
            }
            let set = agreement::generate(&mut rng(&[a as u64, d as u64]), &g, 150, a, d).unwrap();
            assert_eq!(set.len(), 150);
            for s in &set {
                let text = agreement::render(&s.tokens);
                assert_eq!(s.subject, 1, "{text}");
                assert_eq!(s.tokens[0], agreement::THE, "{text}");
                // the label is the subject's number, and the verb carries it
                assert_eq!(noun_number(s.tokens[s.subject]), Some(s.number), "{text}");
                assert_eq!(
                    main_verb(s.tokens[s.verb]),
                    Some((s.verb_lemma, s.number)),
                    "{text}"
                );
                // exactly the attractors and the distance asked for
                let nouns = intervening_nouns(s);
                let attractors = nouns.iter().filter(|&&n| n != s.number).count();
                assert_eq!((attractors, s.attractors), (a, a), "{text}");
                assert_eq!(nouns.len(), s.nouns, "{text}");
                assert!(s.nouns - a <= g.max_nonattractors, "{text}");
                assert_eq!(s.verb - s.subject - 1, d, "{text}");
                assert_eq!(s.distance, d, "{text}");
                assert_eq!(s.prefix().len(), d + 2);
                // the nearest noun before the verb
                assert_eq!(s.nearest, *nouns.last().unwrap_or(&s.number), "{text}");
                // no other main verb before the verb; relative-clause verbs agree with their noun
                for (i, &t) in s.tokens[..s.verb].iter().enumerate() {
                    assert!(main_verb(t).is_none(), "{text}");
                    if t == agreement::THAT {
                        let n = noun_number(s.tokens[i + 2])
                            .or_else(|| noun_number(s.tokens[i + 3]))
                            .unwrap();
                        let v = if noun_number(s.tokens[i + 2]).is_some() {
                            s.tokens[i + 3]
                        } else {
                            s.tokens[i + 4]
                        };
                        let rc =
                            (0..agreement::RC_VERBS.len()).find(|&l| agreement::rc_verb(l, n) == v);
                        assert!(rc.is_some(), "relative clause verb disagrees: {text}");
                    }
                }
                // every id in the vocabulary, and a whole sentence
                assert!(
                    s.tokens
                        .iter()
                        .all(|&t| t < VOCAB && agreement::word(t).is_some())
                );
                assert_eq!(*s.tokens.last().unwrap(), agreement::PERIOD);
                assert_eq!(s.tokens.len(), d + 6);
            }
        }
    }
    assert!(agreement::word(VOCAB).is_none());
}

/// The preamble grammar with `max_preamble` nouns at most.
fn preamble_grammar(max_preamble: usize) -> Grammar {
    Grammar {
        max_preamble,
        ..Grammar::default()
    }
}

#[test]
fn the_preamble_moves_the_subject_and_keeps_labels_counts_and_distances() {
    let g = preamble_grammar(3);
    assert_eq!(GrammarKind::Fixed.apply(&g).max_preamble, 0);
    assert_eq!(GrammarKind::Preamble.apply(&g), g);
    let (mut clauses, mut first_agrees, mut with_preamble) = (0, 0, 0);
    let mut sizes = [0usize; 4];
    for a in 0..=4usize {
        for d in [3 * a, 3 * a + 2, 3 * a + 7, 25] {
            let set =
                agreement::generate(&mut rng(&[4, a as u64, d as u64]), &g, 200, a, d).unwrap();
            for (i, s) in set.iter().enumerate() {
                let text = agreement::render(&s.tokens);
                // balanced preamble sizes, and the subject right after `, the`
                assert_eq!(s.preamble, i % 4, "{text}");
                sizes[s.preamble] += 1;
                let pre = agreement::preamble_tokens(s.preamble);
                assert_eq!(s.subject, pre + 1, "{text}");
                assert_eq!(s.tokens[s.subject - 1], agreement::THE, "{text}");
                if s.preamble > 0 {
                    assert_eq!(pre, 3 * s.preamble + 1);
                    assert_eq!(s.tokens[pre - 1], agreement::COMMA, "{text}");
                    with_preamble += 1;
                    first_agrees += usize::from(s.first == s.number);
                } else {
                    assert_eq!(s.first, s.number, "{text}");
                }
                // the preamble: exactly its nouns, the first noun's number recorded, no main verb,
                // no comma but the last; a clause verb agrees with the noun before it
                let head = &s.tokens[..pre];
                let nouns: Vec<Number> = head.iter().filter_map(|&t| noun_number(t)).collect();
                assert_eq!(nouns.len(), s.preamble, "{text}");
                assert_eq!(
                    nouns.first().copied().unwrap_or(s.number),
                    s.first,
                    "{text}"
                );
                assert!(head.iter().all(|&t| main_verb(t).is_none()), "{text}");
                assert!(
                    head.iter()
                        .take(pre.saturating_sub(1))
                        .all(|&t| t != agreement::COMMA)
                );
                for (j, &t) in head.iter().enumerate() {
                    if let Some(n) = (0..agreement::RC_VERBS.len()).find_map(|l| {
                        [Number::Singular, Number::Plural]
                            .into_iter()
                            .find(|&n| agreement::rc_verb(l, n) == t)
                    }) {
                        assert_eq!(noun_number(head[j - 1]), Some(n), "{text}");
                        assert_eq!(
                            agreement::word(head[0]).map(|w| agreement::CONJUNCTIONS.contains(&w)),
                            Some(true),
                            "{text}"
                        );
                        clauses += 1;
                    }
                }
                // the rest is the fixed grammar's sentence: label, attractors, distance, nearest
                assert_eq!(noun_number(s.tokens[s.subject]), Some(s.number), "{text}");
                assert_eq!(
                    main_verb(s.tokens[s.verb]),
                    Some((s.verb_lemma, s.number)),
                    "{text}"
                );
                let between = intervening_nouns(s);
                assert_eq!(
                    between.iter().filter(|&&n| n != s.number).count(),
                    a,
                    "{text}"
                );
                assert_eq!(between.len(), s.nouns, "{text}");
                assert_eq!((s.attractors, s.distance), (a, d), "{text}");
                assert_eq!(s.verb - s.subject - 1, d, "{text}");
                assert_eq!(s.nearest, *between.last().unwrap_or(&s.number), "{text}");
                assert!(
                    s.tokens[..s.verb].iter().all(|&t| main_verb(t).is_none()),
                    "{text}"
                );
                assert_eq!(s.tokens.len(), pre + d + 6, "{text}");
                assert_eq!(*s.tokens.last().unwrap(), agreement::PERIOD);
                assert!(s.tokens.iter().all(|&t| t < VOCAB));
            }
        }
    }
    assert!(sizes.iter().all(|&n| n == sizes[0]), "{sizes:?}");
    // the preamble's first noun is a fair coin against the subject, and clauses do occur
    let rate = first_agrees as f64 / with_preamble as f64;
    assert!((rate - 0.5).abs() < 0.03, "{rate} of {with_preamble}");
    assert!(clauses > 300, "{clauses}");
    // a preamble larger than the grammar allows is an error; the random one stays in range
    assert!(agreement::sentence_with(&mut rng(&[]), &g, 0, 4, 4).is_err());
    let mut r = rng(&[8]);
    let mut seen = [false; 4];
    for _ in 0..200 {
        seen[agreement::sentence(&mut r, &g, 1, 5).unwrap().preamble] = true;
    }
    assert_eq!(seen, [true; 4]);
    assert_eq!(agreement::render(&[agreement::COMMA]), ",");
}

#[test]
fn the_first_noun_baseline_is_exact_and_only_the_preamble_breaks_it() {
    for (a, d) in [(0, 6), (1, 3), (2, 12), (4, 12)] {
        let fixed = agreement::generate(
            &mut rng(&[6, a, d]),
            &Grammar::default(),
            300,
            a as usize,
            d as usize,
        )
        .unwrap();
        assert_eq!(agreement::first_noun_errors(&fixed), 0);
        let set = agreement::generate(
            &mut rng(&[6, a, d]),
            &preamble_grammar(2),
            300,
            a as usize,
            d as usize,
        )
        .unwrap();
        // from the tokens alone: the first noun against the subject
        let disagree = set
            .iter()
            .filter(|s| s.tokens.iter().find_map(|&t| noun_number(t)).unwrap() != s.number)
            .count();
        assert_eq!(agreement::first_noun_errors(&set), disagree);
        assert!(
            set.iter()
                .filter(|s| s.preamble == 0)
                .all(|s| s.first == s.number)
        );
        // a third of the sentences have no preamble; the rest disagree about half the time
        let rate = disagree as f64 / 200.0;
        assert!((rate - 0.5).abs() < 0.12, "{rate}");
        // the recency baseline does not see the preamble: its errors as in the tokens between
        let recency = set.iter().filter(|s| s.nearest != s.number).count();
        assert_eq!(agreement::recency_errors(&set), recency);
        if a == 0 {
            assert_eq!(recency, 0);
        }
    }
}

#[test]
fn every_word_of_the_vocabulary_has_one_id() {
    let mut words: Vec<&str> = (0..VOCAB).map(|t| agreement::word(t).unwrap()).collect();
    words.sort_unstable();
    words.dedup();
    assert_eq!(words.len(), VOCAB);
    for l in 0..agreement::NOUNS.len() {
        assert_eq!(
            noun_number(agreement::noun(l, Number::Plural)),
            Some(Number::Plural)
        );
        assert_eq!(
            agreement::word(agreement::noun(l, Number::Singular)),
            Some(agreement::NOUNS[l].0)
        );
    }
    assert_eq!(
        agreement::render(&[agreement::THE, agreement::verb(0, Number::Plural)]),
        "the are"
    );
}

#[test]
fn a_distance_too_short_for_the_attractors_is_an_error() {
    let e = agreement::sentence(&mut rng(&[]), &Grammar::default(), 3, 8).unwrap_err();
    assert!(e.to_string().contains("at least 9"), "{e}");
    assert!(agreement::sentence(&mut rng(&[]), &Grammar::default(), 3, 9).is_ok());
}

#[test]
fn the_recency_baseline_errs_exactly_where_the_nearest_noun_disagrees() {
    let g = Grammar::default();
    for (a, d) in [(0, 10), (1, 3), (1, 12), (2, 12), (3, 20), (4, 12)] {
        let set =
            agreement::generate(&mut rng(&[9, a, d]), &g, 400, a as usize, d as usize).unwrap();
        // from the tokens alone: the last noun before the verb against the subject
        let disagree = set
            .iter()
            .filter(|s| {
                let last = s.tokens[..s.verb]
                    .iter()
                    .rev()
                    .find_map(|&t| noun_number(t))
                    .unwrap();
                last != s.number
            })
            .count();
        let rate = agreement::recency_errors(&set) as f64 / set.len() as f64;
        assert_relative_eq!(
            rate,
            disagree as f64 / set.len() as f64,
            epsilon = 1e-15,
            max_relative = 1e-15
        );
        if a == 0 {
            assert_eq!(agreement::recency_errors(&set), 0);
        }
        // four attractors in twelve tokens leave no room for another noun: always wrong
        if (a, d) == (4, 12) {
            assert_eq!(agreement::recency_errors(&set), set.len());
        }
        let plural = set.iter().filter(|s| s.number == Number::Plural).count();
        assert_eq!(agreement::majority_errors(&set, Number::Singular), plural);
    }
    let all_singular = Grammar {
        p_singular: 1.0,
        ..Grammar::default()
    };
    let set = agreement::generate(&mut rng(&[1]), &all_singular, 100, 2, 9).unwrap();
    assert_eq!(all_singular.majority(), Number::Singular);
    assert_eq!(agreement::majority_errors(&set, Number::Singular), 0);
}

#[test]
fn training_attractor_counts_halve_with_each_attractor() {
    let mut r = rng(&[3]);
    let n = 40_000;
    let mut counts = [0usize; 5];
    for _ in 0..n {
        counts[agreement::draw_attractors(&mut r, 4, 20)] += 1;
    }
    for (a, &c) in counts.iter().enumerate() {
        let p = f64::from(1u32 << (4 - a)) / 31.0;
        assert_relative_eq!(c as f64 / n as f64, p, epsilon = 0.01, max_relative = 0.1);
    }
    // a distance of 5 holds one attractor at most
    assert!((0..1000).all(|_| agreement::draw_attractors(&mut r, 4, 5) <= 1));
}

#[test]
fn the_generator_is_a_function_of_its_stream() {
    let g = Grammar::default();
    let a = agreement::generate(&mut rng(&[1, 2]), &g, 50, 2, 14).unwrap();
    let b = agreement::generate(&mut rng(&[1, 2]), &g, 50, 2, 14).unwrap();
    let c = agreement::generate(&mut rng(&[1, 3]), &g, 50, 2, 14).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn parameter_counts_and_the_matched_hidden_sizes() {
    for task in [Task::Number, Task::Lm] {
        let k = task.outputs();
        let (c, r) = agreement::parameter_count(CellKind::Lstm, task, 50);
        // PyTorch's nn.LSTM: 4H(D + H) + 8H; the readout (H + 1)K
        assert_eq!((c, r), (4 * 50 * (VOCAB + 50) + 8 * 50, 51 * k));
        let target = c + r;
        for cell in [CellKind::RnnTanh, CellKind::Gru] {
            let h = agreement::matched_hidden(cell, task, target);
            let total = |h: usize| {
                let (c, r) = agreement::parameter_count(cell, task, h);
                (c + r).abs_diff(target)
            };
            assert!(
                total(h) <= total(h - 1) && total(h) <= total(h + 1),
                "{cell} {h}"
            );
        }
        let models = agreement::models(
            task,
            &[CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru],
            50,
            &[Sizing::Hidden, Sizing::Params],
        );
        // three at 50 units, then the tanh RNN and the GRU at the LSTM's count
        assert_eq!(models.len(), 5);
        assert!(models[..3].iter().all(|m| m.hidden == 50));
        assert!(
            models[3].hidden > 100 && models[4].hidden > 50,
            "{models:?}"
        );
    }
}

/// The probe's gradient reaching the subject is the trainer's recorded `∂L/∂s_k`
/// (`Trainer::workspace_mut` → `record_state_grads`): it must equal `∂L/∂s0` of the same loss
/// run on the suffix from the carried state `s_k`.
#[test]
fn recorded_state_gradients_equal_the_initial_gradient_of_the_suffix() {
    for cell in [CellKind::Lstm, CellKind::RnnTanh, CellKind::Gru] {
        let spec = RunSpec {
            grammar: GrammarKind::Fixed,
            task: Task::Number,
            model: ModelSpec {
                cell,
                sizing: Sizing::Hidden,
                hidden: 7,
            },
            replicate: 0,
        };
        let model = agreement::build::<f64>(&spec, 3).unwrap();
        let set = agreement::generate(&mut rng(&[5]), &Grammar::default(), 6, 1, 7).unwrap();
        let (b, steps) = (set.len(), set[0].prefix().len());
        let mut ids = vec![0; steps * b];
        for (j, s) in set.iter().enumerate() {
            for (t, &id) in s.prefix().iter().enumerate() {
                ids[t * b + j] = id;
            }
        }
        let classes: Vec<usize> = set.iter().map(|s| s.number.class()).collect();
        let config = Config {
            readout_at: ReadoutAt::Last,
            clip: None,
            ..Config::default()
        };
        let mut full = Trainer::new(&model, config).unwrap();
        full.workspace_mut().record_state_grads = true;
        let loss = full
            .loss_and_grads(
                &model,
                &Batch {
                    inputs: Inputs::Tokens {
                        ids: &ids,
                        vocab: VOCAB,
                    },
                    batch: b,
                    targets: Targets::Classes(&classes),
                },
            )
            .unwrap();
        for k in [1, 2, 5] {
            let recorded = full.workspace().tape.d_state(k).to_owned();
            let mut split = Trainer::new(
                &model,
                Config {
                    carry_state: true,
                    ..config
                },
            )
            .unwrap();
            let (head, tail) = ids.split_at(k * b);
            split
                .loss(
                    &model,
                    &Batch {
                        inputs: Inputs::Tokens {
                            ids: head,
                            vocab: VOCAB,
                        },
                        batch: b,
                        targets: Targets::Classes(&classes),
                    },
                )
                .unwrap();
            let tail_loss = split
                .loss_and_grads(
                    &model,
                    &Batch {
                        inputs: Inputs::Tokens {
                            ids: tail,
                            vocab: VOCAB,
                        },
                        batch: b,
                        targets: Targets::Classes(&classes),
                    },
                )
                .unwrap();
            assert_relative_eq!(tail_loss, loss, epsilon = 1e-14, max_relative = 1e-12);
            let d_s0 = model.net.d_initial(split.workspace(), 0).to_owned();
            assert!(recorded.iter().any(|v| v.abs() > 1e-6), "{cell} k={k}");
            assert_relative_eq!(recorded, d_s0, epsilon = 1e-14, max_relative = 1e-10);
        }
    }
}

// --- the binary ---------------------------------------------------------------------------

fn quick(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--out", dir.to_str().unwrap(), "--quick", "--quiet"];
    args.extend_from_slice(extra);
    cli::run_ok(BIN, &args)
}

const TABLES: [&str; 5] = [
    "curves.csv",
    "errors.csv",
    "baselines.csv",
    "models.csv",
    "runs.csv",
];

#[test]
fn csv_schemas_and_sidecar() {
    let dir = cli::temp_dir("agree", "schema");
    quick(&dir, &[]);
    let headers = [
        "grammar,task,model,seed,update,loss,grad_norm,clipped,subject_grad_norm,probe_loss,probe_error",
        "grammar,task,model,cell,sizing,hidden,seed,attractors,distance,preamble,subject_position,sentences,errors,error_rate",
        "grammar,seed,attractors,distance,preamble,subject_position,sentences,recency_errors,recency_error,first_noun_errors,first_noun_error,majority_errors,majority_error",
        "task,model,cell,sizing,hidden,params,cell_params,readout_params,lstm_params",
        "grammar,task,model,seed,updates,diverged,final_loss,final_subject_grad_norm,test_sentences,test_errors,test_error",
    ];
    // quick: 2 grammars × 2 tasks × 5 models × 1 seed; 60 updates logged every 20; test
    // distances 0,6,12 and attractors 0..=4 give 3 + 2 + 2 + 1 + 1 = 9 strata, split by the
    // preamble's 0..=2 nouns in the preamble grammar
    let counts = [20 * 3, 10 * 9 + 10 * 27, 9 + 27, 10, 20];
    for ((name, header), n) in TABLES.iter().zip(headers).zip(counts) {
        let text = read(&dir, name);
        assert_eq!(text.lines().next().unwrap(), header, "{name}");
        assert_eq!(text.lines().count(), 1 + n, "{name}");
    }
    for l in read(&dir, "curves.csv").lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let g: f64 = f[8].parse().unwrap();
        assert!(g > 0.0 && g.is_finite(), "{l}");
        let e: f64 = f[10].parse().unwrap();
        assert!((0.0..=1.0).contains(&e), "{l}");
    }
    for l in read(&dir, "errors.csv").lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let (n, e): (f64, f64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
        let rate: f64 = f[13].parse().unwrap();
        assert_relative_eq!(rate, e / n, epsilon = 1e-15, max_relative = 1e-15);
        // the subject's position: 1, or after a preamble of 3 tokens a noun and the comma
        let p: usize = f[9].parse().unwrap();
        let at: usize = f[10].parse().unwrap();
        assert_eq!(at, if p == 0 { 1 } else { 3 * p + 2 }, "{l}");
        assert!(f[0] == "preamble" || p == 0, "{l}");
    }
    // the baselines are exact: no attractor, no recency error; four attractors in 12 tokens,
    // always one; the fixed grammar's first noun is the subject; a test set of 40 sentences is
    // split 14 / 13 / 13 by preamble size
    for l in read(&dir, "baselines.csv").lines().skip(1) {
        let (grammar, rest) = l.split_once(',').unwrap();
        let f: Vec<usize> = rest
            .split(',')
            .enumerate()
            .filter(|(i, _)| [0, 1, 2, 3, 4, 5, 6, 8, 10].contains(i))
            .map(|(_, x)| x.parse().unwrap())
            .collect();
        let (a, d, p, n, recency, first) = (f[1], f[2], f[3], f[5], f[6], f[7]);
        if a == 0 {
            assert_eq!(recency, 0, "{l}");
        }
        if (a, d) == (4, 12) {
            assert_eq!(recency, n, "{l}");
        }
        if grammar == "fixed" || p == 0 {
            assert_eq!(first, 0, "{l}");
        }
        assert_eq!(
            n,
            if grammar == "fixed" {
                40
            } else {
                [14, 13, 13][p]
            },
            "{l}"
        );
    }
    // models: the LSTM's count, and the matched ones close to it
    let models = read(&dir, "models.csv");
    assert!(
        models.contains("number,lstm-12,lstm,hidden,12,3050,3024,26,3050"),
        "{models}"
    );
    for l in models.lines().skip(1).filter(|l| l.contains(",params,")) {
        let f: Vec<f64> = l.split(',').skip(5).map(|x| x.parse().unwrap()).collect();
        assert_relative_eq!(f[0], f[3], epsilon = 0.0, max_relative = 0.05);
    }
    let side: serde_json::Value = serde_json::from_str(&read(&dir, "agreement.json")).unwrap();
    assert_eq!(side["experiment"], "agreement");
    assert_eq!(side["plan"]["hyper"]["updates"], 60);
    assert_eq!(side["plan"]["common_distances"], serde_json::json!([12]));
    assert_eq!(
        side["plan"]["grammars"],
        serde_json::json!(["fixed", "preamble"])
    );
    assert_eq!(side["outputs"].as_array().unwrap().len(), 5);
    assert_eq!(
        side["results"]["error_by_attractors"]
            .as_array()
            .unwrap()
            .len(),
        2 * 10 * 5
    );
    let b = &side["results"]["baselines_by_attractors"];
    assert_eq!(b[4]["recency_error"], 1.0);
    assert_eq!(
        (&b[4]["grammar"], &b[9]["grammar"]),
        (&"fixed".into(), &"preamble".into())
    );
    assert_eq!(b[2]["first_noun_error"], 0.0);
    assert!(b[9]["first_noun_error"].as_f64().unwrap() > 0.0);
    assert!(!dir.join("chunks").exists());
}

#[test]
fn output_is_byte_identical_for_any_thread_count_and_shard_split() {
    let dirs = cli::assert_thread_and_shard_invariant("agree", &TABLES, |dir, extra| {
        quick(dir, &[&["--seeds", "2"][..], extra].concat())
    });
    // the two seeds differ (the test sets and baselines are per seed)
    let b = read(&dirs[0], "baselines.csv");
    assert_eq!(b.lines().count(), 1 + 2 * (9 + 27));
}

#[test]
fn a_killed_run_resumes_to_identical_bytes() {
    let args = |dir: &Path| -> Vec<String> {
        [
            "--out",
            dir.to_str().unwrap(),
            "--quick",
            "--quiet",
            "--threads",
            "2",
            "--seeds",
            "3",
            "--updates",
            "150",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let (killed, _, log) =
        cli::assert_resumes_after_kill(BIN, "agree", args, (3, 120, "agreement.json"), &TABLES);
    assert!(!log.contains("chunks_computed=60 "), "{log}");
    let side: serde_json::Value = serde_json::from_str(&read(&killed, "agreement.json")).unwrap();
    assert_eq!(side["invocations"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_flags_exit_2_with_a_clear_message_and_write_nothing() {
    cli::assert_bad_flags_exit_2(
        BIN,
        "agree",
        &["--quick"],
        &[
            (vec!["--tasks", "parse"], "unknown task 'parse'"),
            (vec!["--cells", "elman"], "unknown cell 'elman'"),
            (vec!["--cells", "lstm,lstm"], "listed twice"),
            (vec!["--sizing", "depth"], "unknown sizing"),
            (vec!["--grammar", "tree"], "invalid value"),
            (
                vec!["--max-preamble", "0"],
                "--max-preamble must be in 1..=20",
            ),
            (vec!["--p-clause", "2"], "in [0, 1]"),
            (vec!["--hidden", "0"], "--hidden must be at least 1"),
            (vec!["--updates", "0"], "--updates must be at least 1"),
            (
                vec!["--test-distances", "0,4"],
                "need a distance of at least 12",
            ),
            (vec!["--test-distances", "12,12"], "listed twice"),
            (vec!["--p-singular", "1.5"], "in [0, 1]"),
            (vec!["--clip=-1"], "--clip"),
            (vec!["--lr=-0.1"], "learning rate"),
            (vec!["--max-attractors", "99"], "at most 20"),
            (vec!["--shard", "3/2"], "invalid shard"),
            (vec!["--dtype", "f16"], "unknown dtype"),
            (vec!["--threads", "0"], "--threads must be at least 1"),
            (vec!["--hidden", "x"], "invalid value"),
        ],
    );
}

#[test]
fn help_explains_the_experiment() {
    let out = cli::run_ok(BIN, &["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "attractors",
        "Linzen",
        "--quick",
        "--test-distances",
        "recency",
        "preamble",
        "first noun",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}
