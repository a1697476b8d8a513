//! The §4.1 tasks (`bptt::experiment::tasks`): every generator reproduces its analytic chance
//! error rate (`proofs/training.md` §4) and follows its documented encoding; `count_errors`
//! counts no error for the targets themselves.

use bptt::experiment::tasks::{
    ALL_TASKS, Batch, Inputs, MEMORY_LENGTH, Target, Task, count_errors,
};
use bptt::rng::stream;
use nalgebra::DMatrix;

#[test]
fn generators_match_their_analytic_chance_error_rates() {
    let n = 20_000;
    for task in ALL_TASKS {
        let mut rng = stream(77, &[task.id()]);
        let (mut chance, mut oracle) = (0, 0);
        for _ in 0..n / 1000 {
            let b = task.generate(&mut rng, 1000, 60).unwrap();
            chance += count_errors(&b.target, &task.chance_outputs(&b), b.batch);
            oracle += count_errors(&b.target, &perfect_outputs(task, &b), b.batch);
        }
        let rate = chance as f64 / n as f64;
        let p = task.chance_error();
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!(
            (rate - p).abs() <= 4.5 * se + 1e-12,
            "{task}: measured chance error {rate} vs analytic {p} (SE {se:.2e})"
        );
        // and the error count is not blind: the targets themselves make no error
        assert_eq!(oracle, 0, "{task}");
    }
}

/// Outputs equal to the targets (one-hot classes, exact values).
fn perfect_outputs(task: Task, b: &Batch) -> DMatrix<f64> {
    let o = task.output_size();
    let one_hot = |c: &[usize]| DMatrix::from_fn(o, c.len(), |i, j| (i == c[j]) as u8 as f64);
    match &b.target {
        Target::Class(c) | Target::ClassEveryStep(c) => one_hot(c),
        Target::Value(v) => v.clone(),
    }
}

#[test]
fn generators_follow_the_documented_encodings() {
    let mut rng = stream(1, &[]);
    // temporal order: exactly two A/B symbols, in [T/10, 2T/10) and [5T/10, 6T/10)
    let b = Task::TemporalOrder.generate(&mut rng, 50, 100).unwrap();
    let (Inputs::OneHot { symbols, .. }, Target::Class(c)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..50 {
        let marks: Vec<(usize, usize)> = (0..100)
            .filter(|&t| symbols[t * 50 + j] < 2)
            .map(|t| (t, symbols[t * 50 + j]))
            .collect();
        assert_eq!(marks.len(), 2);
        assert!((10..20).contains(&marks[0].0) && (50..60).contains(&marks[1].0));
        assert_eq!(c[j], marks[0].1 + 2 * marks[1].1);
    }
    // addition: two markers, target the mean of the marked values, length T..T+T/10
    let b = Task::Addition.generate(&mut rng, 30, 100).unwrap();
    assert!((100..110).contains(&b.steps));
    let (Inputs::Dense(x), Target::Value(v)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..30 {
        let marked: Vec<usize> = (0..b.steps)
            .filter(|&t| x[(0, t * 30 + j)] == 1.0)
            .collect();
        assert_eq!(marked.len(), 2);
        assert!(marked[0] < b.steps / 10 && marked[1] < b.steps / 2);
        let want = (x[(1, marked[0] * 30 + j)] + x[(1, marked[1] * 30 + j)]) / 2.0;
        assert_eq!(v[(0, j)], want);
    }
    // memorization: pattern, blanks, trigger at T + 10, recall over the last 10 steps
    let t = 15;
    let b = Task::Memorization.generate(&mut rng, 4, t).unwrap();
    assert_eq!(b.steps, t + 2 * MEMORY_LENGTH);
    let (Inputs::OneHot { symbols, .. }, Target::ClassEveryStep(c)) = (&b.inputs, &b.target) else {
        panic!("layout")
    };
    for j in 0..4 {
        for s in 0..b.steps {
            let (x, y) = (symbols[s * 4 + j], c[s * 4 + j]);
            match s {
                s if s < MEMORY_LENGTH => assert!(x < 5 && y == 5),
                s if s == t + MEMORY_LENGTH => assert_eq!(x, 6),
                s if s < t + MEMORY_LENGTH => assert!(x == 5 && y == 5),
                s => {
                    assert_eq!(x, 5);
                    assert_eq!(y, symbols[(s - t - MEMORY_LENGTH) * 4 + j]);
                }
            }
        }
    }
}
