//! `gradcheck`: the human face of the gradient proof.
//!
//! Runs the finite-difference gradient checker (`bptt::gradcheck`) on every cell (vanilla RNN
//! with each activation, LSTM, GRU in both formulations) at a few sizes and both loss placements, and prints one row per problem. Exits
//! with status 1 if any entry fails, 2 on bad arguments.

use std::process::ExitCode;

use bptt::gradcheck::{self, Problem, Verdict};
use bptt::rng::{stream, uniform_matrix};
use bptt::{
    Activation, Cell, Gru, GruVariant, LossAt, Lstm, Model, Objective, Readout, Targets,
    Truncation, VanillaRnn,
};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "gradcheck",
    version,
    about = "Check every backward pass of bptt against central finite differences (f64).",
    long_about = "Check every backward pass of bptt against central finite differences (f64).\n\n\
        For each cell, activation and size, builds a model (cell + linear readout + loss), checks \
        the analytic gradient of every parameter, input x_t and initial state h0 against a central \
        difference with step cbrt(eps)*max(1,|theta|), and prints the worst relative error. \
        Entries where a ReLU kink lies inside the stencil are excluded and counted."
)]
struct Args {
    /// Seed of the ChaCha streams that draw weights, inputs and targets.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Relative-error tolerance of the verdict.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
    /// Print the worst entries of every problem, not only of failing ones.
    #[arg(long)]
    verbose: bool,
}

/// One problem size: hidden H, input D, steps T, batch B.
#[derive(Clone, Copy)]
struct Size {
    hidden: usize,
    input: usize,
    steps: usize,
    batch: usize,
}

const SIZES: [Size; 3] = [
    Size {
        hidden: 4,
        input: 3,
        steps: 5,
        batch: 2,
    },
    Size {
        hidden: 8,
        input: 5,
        steps: 12,
        batch: 3,
    },
    Size {
        hidden: 16,
        input: 4,
        steps: 20,
        batch: 2,
    },
];

fn problem<C: Cell<f64>>(
    cell: C,
    size: Size,
    at: LossAt,
    classify: bool,
    seed: u64,
    item: u64,
) -> Problem<C> {
    let mut rng = stream(seed, &[item]);
    let outputs = 3;
    let readout = Readout::uniform(
        cell.hidden_size(),
        outputs,
        1.0 / (cell.hidden_size() as f64).sqrt(),
        &mut rng,
    );
    let xs = (0..size.steps)
        .map(|_| uniform_matrix(&mut rng, size.input, size.batch, 1.0))
        .collect();
    let s0 = uniform_matrix(&mut rng, cell.state_size(), size.batch, 0.5);
    let n = if at == LossAt::Last { 1 } else { size.steps };
    let targets = if classify {
        use rand::RngExt;
        Targets::CrossEntropy(
            (0..n)
                .map(|_| {
                    (0..size.batch)
                        .map(|_| rng.random_range(0..outputs))
                        .collect()
                })
                .collect(),
        )
    } else {
        Targets::Mse(
            (0..n)
                .map(|_| uniform_matrix(&mut rng, outputs, size.batch, 1.0))
                .collect(),
        )
    };
    Problem {
        model: Model::new(cell, readout).expect("readout sized from the cell"),
        xs,
        s0,
        objective: Objective { targets, at },
        truncation: Truncation::Full,
    }
}

/// Every cell the binary checks.
#[derive(Clone, Copy)]
enum Kind {
    Rnn(Activation),
    Lstm,
    Gru(GruVariant),
}

const KINDS: [Kind; 7] = [
    Kind::Rnn(Activation::Tanh),
    Kind::Rnn(Activation::Sigmoid),
    Kind::Rnn(Activation::Relu),
    Kind::Rnn(Activation::Identity),
    Kind::Lstm,
    Kind::Gru(GruVariant::ResetAfter),
    Kind::Gru(GruVariant::ResetBefore),
];

/// One row of the table: the problem besides its cell.
struct Row {
    size: Size,
    at: LossAt,
    classify: bool,
    item: u64,
}

/// Check one problem and print its row; `Err` carries a message for exit status 2.
fn check_row<C: Cell<f64>>(cell: C, row: &Row, args: &Args) -> Result<bool, String> {
    let &Row {
        size,
        at,
        classify,
        item,
    } = row;
    let name = cell.name();
    let config = gradcheck::Config {
        tolerance: args.tolerance,
        ..gradcheck::Config::default()
    };
    let p = problem(cell, size, at, classify, args.seed, item);
    let report = gradcheck::check(&p, config).map_err(|e| format!("{name}: {e}"))?;
    let ok = report.passed();
    println!(
        "{:<17} {:>14} {:<6} {:<5} {:>8} {:>10.2e} {:>10} {:>6} {:<7}",
        name,
        format!(
            "{},{},{},{}",
            size.hidden, size.input, size.steps, size.batch
        ),
        if classify { "xent" } else { "mse" },
        if at == LossAt::Last { "last" } else { "every" },
        report.judged().count(),
        report.max_error(),
        report.count(Verdict::Unresolved),
        report.kinks(),
        if ok { "PASS" } else { "FAIL" }
    );
    if !ok || args.verbose {
        print!("{report}");
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.tolerance > 0.0 && args.tolerance.is_finite()) {
        eprintln!(
            "error: --tolerance must be a positive number, got {}",
            args.tolerance
        );
        return ExitCode::from(2);
    }
    println!(
        "{:<17} {:>14} {:<6} {:<5} {:>8} {:>10} {:>10} {:>6} {:<7}",
        "cell", "H,D,T,B", "loss", "at", "entries", "max error", "unresolved", "kinks", "verdict"
    );
    let mut failures = 0;
    let mut item = 0u64;
    for kind in KINDS {
        for size in SIZES {
            for (at, classify) in [(LossAt::Last, true), (LossAt::EveryStep, false)] {
                item += 1;
                let mut rng = stream(args.seed, &[item, 0]);
                let (d, h) = (size.input, size.hidden);
                let spec = Row {
                    size,
                    at,
                    classify,
                    item,
                };
                let row = match kind {
                    Kind::Rnn(act) => {
                        check_row(VanillaRnn::pytorch_init(d, h, act, &mut rng), &spec, &args)
                    }
                    Kind::Lstm => check_row(Lstm::pytorch_init(d, h, &mut rng), &spec, &args),
                    Kind::Gru(v) => check_row(Gru::pytorch_init(d, h, v, &mut rng), &spec, &args),
                };
                match row {
                    Ok(ok) => failures += usize::from(!ok),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
        }
    }
    if failures > 0 {
        println!("\n{failures} problem(s) FAILED");
        ExitCode::from(1)
    } else {
        println!(
            "\nall problems PASS: every analytic gradient agrees with central differences (max error ≤ tolerance)"
        );
        ExitCode::SUCCESS
    }
}
