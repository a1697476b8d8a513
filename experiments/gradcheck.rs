//! `gradcheck`: the human face of the gradient proof.
//!
//! Runs the finite-difference gradient checker (`bptt::verify::gradcheck`) on every cell (vanilla RNN
//! with each activation, LSTM, GRU in both formulations) at a few sizes, and on every
//! architecture wrapper (stacked bidirectional, residual, dense) over every cell, with the loss
//! at the last step (cross-entropy) and at every step (MSE); prints one row per problem. Exits
//! with status 1 if any entry fails, 2 on bad arguments. The table is also written as
//! `gradcheck.csv` (with the `gradcheck.json` sidecar) into `--out`, through the experiment
//! driver every binary shares: one chunk per problem.

use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::nn::arch::{Bidirectional, Dense, Residual, SeqLayer, Stacked, Unidirectional};
use bptt::nn::cell::Cell;
use bptt::nn::cells::CellKind;
use bptt::nn::model::{LossAt, Model, NetworkModel, Objective, Targets};
use bptt::nn::readout::Readout;
use bptt::nn::sequence::Truncation;
use bptt::rng::{Rng, stream, uniform_matrix};
use bptt::verify::gradcheck::{self, Checkable, NetworkProblem, Problem, Verdict};
use clap::Parser;

#[derive(Parser, Clone, Debug, serde::Serialize)]
#[command(
    name = "gradcheck",
    version,
    about = "Check every backward pass of bptt against central finite differences (f64).",
    long_about = "Check every backward pass of bptt against central finite differences (f64).\n\n\
        For each cell and architecture, size and loss placement, builds a model (network + linear \
        readout + loss), checks the analytic gradient of every parameter, input x_t and initial \
        state against a central difference with step cbrt(eps)*max(1,|theta|), and prints the \
        worst relative error. Entries where a ReLU kink lies inside the stencil are excluded and \
        counted; entries the finite difference cannot resolve (its own error estimate explains \
        the discrepancy) are counted as unresolved."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
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

/// The architectures' size (each has several layers).
const ARCH_SIZE: Size = Size {
    hidden: 4,
    input: 3,
    steps: 6,
    batch: 2,
};

/// One row of the table: what is checked besides the network.
#[derive(Clone, Copy)]
struct Row {
    size: Size,
    at: LossAt,
    classify: bool,
}

/// The architectures checked over every cell.
#[derive(Clone, Copy)]
enum Arch {
    /// 2 layers, bidirectional (PyTorch `num_layers=2, bidirectional=True`).
    StackedBi,
    /// 3 residual layers (hidden 4, 5, 5: one projection, two identity skips).
    Residual,
    /// 3 densely connected layers.
    Dense,
}

/// Readout, inputs and targets for a network of input `d` and output `o`.
fn inputs_and_objective(
    rng: &mut Rng,
    d: usize,
    row: &Row,
) -> (Vec<nalgebra::DMatrix<f64>>, Objective<f64>) {
    let Row { size, at, classify } = *row;
    let xs = (0..size.steps)
        .map(|_| uniform_matrix(rng, d, size.batch, 1.0))
        .collect();
    let n = if at == LossAt::Last { 1 } else { size.steps };
    let targets = if classify {
        use rand::RngExt;
        Targets::CrossEntropy(
            (0..n)
                .map(|_| (0..size.batch).map(|_| rng.random_range(0..3)).collect())
                .collect(),
        )
    } else {
        Targets::Mse(
            (0..n)
                .map(|_| uniform_matrix(rng, 3, size.batch, 1.0))
                .collect(),
        )
    };
    (xs, Objective { targets, at })
}

fn cell_problem<C: Cell<f64>>(cell: C, row: &Row, rng: &mut Rng) -> Problem<C> {
    let h = cell.hidden_size();
    let readout = Readout::uniform(h, 3, 1.0 / (h as f64).sqrt(), rng);
    let (xs, objective) = inputs_and_objective(rng, cell.input_size(), row);
    let s0 = uniform_matrix(rng, cell.state_size(), row.size.batch, 0.5);
    Problem {
        model: Model::new(cell, readout).expect("readout sized from the cell"),
        xs,
        s0,
        objective,
        truncation: Truncation::Full,
    }
}

fn network_problem<N: SeqLayer<f64>>(net: N, row: &Row, rng: &mut Rng) -> NetworkProblem<N> {
    let o = net.output_size();
    let readout = Readout::uniform(o, 3, 1.0 / (o as f64).sqrt(), rng);
    let (xs, objective) = inputs_and_objective(rng, net.input_size(), row);
    let s0 = net
        .state_sizes()
        .iter()
        .map(|&s| uniform_matrix(rng, s, row.size.batch, 0.5))
        .collect();
    NetworkProblem {
        model: NetworkModel::new(net, readout).expect("readout sized from the network"),
        xs,
        s0,
        objective,
    }
}

/// Check one problem and print its row; `Err` carries a message for exit status 2.
/// What the exact and precision oracles say about one problem.
struct Oracles {
    adjoint: bptt::verify::oracle::AdjointCheck,
    f32_error: f64,
}

fn cell_oracles<C: bptt::nn::cell::Rescalar<f64>>(
    p: &Problem<C>,
    seed: u64,
) -> Result<Oracles, String> {
    let err = |e: bptt::error::BpttError| e.to_string();
    Ok(Oracles {
        adjoint: bptt::verify::oracle::adjoint_sequence(&p.model.cell, &p.xs, &p.s0, seed)
            .map_err(err)?,
        f32_error: bptt::verify::oracle::f32_error_sequence(&p.model.cell, &p.xs, &p.s0, seed)
            .map_err(err)?,
    })
}

fn net_oracles<N: bptt::nn::arch::RescalarLayer<f64>>(
    p: &NetworkProblem<N>,
    seed: u64,
) -> Result<Oracles, String> {
    let err = |e: bptt::error::BpttError| e.to_string();
    Ok(Oracles {
        adjoint: bptt::verify::oracle::adjoint_network(&p.model.net, &p.xs, &p.s0, seed)
            .map_err(err)?,
        f32_error: bptt::verify::oracle::f32_error_network(&p.model.net, &p.xs, &p.s0, seed)
            .map_err(err)?,
    })
}

/// One row of `gradcheck.csv`: one problem, every oracle's verdict.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct CheckRow {
    network: String,
    hidden: usize,
    input: usize,
    steps: usize,
    batch: usize,
    /// `xent` (cross-entropy) or `mse`.
    loss: String,
    /// `last` or `every` step.
    at: String,
    /// Entries the finite difference judged, its worst relative error, entries it could not
    /// resolve, entries excluded because a ReLU kink lies inside the stencil.
    entries: usize,
    fd_error: f64,
    unresolved: usize,
    kinks: usize,
    /// Worst relative error against Richardson extrapolation; entries outside its own estimate.
    richardson_error: f64,
    inconsistent: usize,
    /// The dual-number adjoint identity's error, and the f32 pass's error against f64.
    dual_adjoint_error: f64,
    f32_error: f64,
    verdict: String,
}

/// Check one problem with every oracle; the row, and the failure report (or, with
/// `--verbose`, every report).
fn check_row<P: Checkable>(
    name: &str,
    problem: &P,
    oracles: Oracles,
    row: &Row,
    args: &Args,
) -> Result<(CheckRow, String), String> {
    let config = gradcheck::Config {
        tolerance: args.tolerance,
        ..gradcheck::Config::default()
    };
    let report = gradcheck::check(problem, config).map_err(|e| format!("{name}: {e}"))?;
    let richardson = gradcheck::check_richardson(problem).map_err(|e| format!("{name}: {e}"))?;
    let judged: Vec<_> = richardson.iter().filter(|e| !e.kink).collect();
    let inconsistent = judged.iter().filter(|e| !e.consistent()).count();
    let rich_max = judged
        .iter()
        .map(|e| {
            (e.analytic - e.estimate).abs() / e.analytic.abs().max(e.estimate.abs()).max(1e-300)
        })
        .fold(0.0, f64::max);
    let adjoint_ok = oracles.adjoint.passed();
    let ok = report.passed() && adjoint_ok && inconsistent == 0;
    let s = row.size;
    let mut detail = String::new();
    if !ok || args.verbose {
        write!(
            detail,
            "{name} (H,D,T,B = {},{},{},{}):\n{report}",
            s.hidden, s.input, s.steps, s.batch
        )
        .unwrap();
        if !adjoint_ok {
            writeln!(
                detail,
                "dual-number adjoint check failed: {:?}",
                oracles.adjoint
            )
            .unwrap();
        }
    }
    let check = CheckRow {
        network: name.to_string(),
        hidden: s.hidden,
        input: s.input,
        steps: s.steps,
        batch: s.batch,
        loss: if row.classify { "xent" } else { "mse" }.into(),
        at: if row.at == LossAt::Last {
            "last"
        } else {
            "every"
        }
        .into(),
        entries: report.judged().count(),
        fd_error: report.max_error(),
        unresolved: report.count(Verdict::Unresolved),
        kinks: report.kinks(),
        richardson_error: rich_max,
        inconsistent,
        dual_adjoint_error: oracles.adjoint.error,
        f32_error: oracles.f32_error,
        verdict: if ok { "PASS" } else { "FAIL" }.into(),
    };
    Ok((check, detail))
}

/// A cell of `kind`, PyTorch-initialised.
fn check_cell(
    kind: CellKind,
    row: &Row,
    args: &Args,
    rng: &mut Rng,
) -> Result<(CheckRow, String), String> {
    let cell = kind.pytorch_init::<f64>(row.size.input, row.size.hidden, rng);
    let name = cell.name();
    let p = cell_problem(cell, row, rng);
    check_row(&name, &p, cell_oracles(&p, 1)?, row, args)
}

/// Architecture `arch` over cells made by `make(input, hidden, rng)`.
fn check_arch<C: bptt::nn::cell::Rescalar<f64>>(
    arch: Arch,
    make: impl Fn(usize, usize, &mut Rng) -> C,
    row: &Row,
    args: &Args,
    rng: &mut Rng,
) -> Result<(CheckRow, String), String> {
    let (d, h) = (row.size.input, row.size.hidden);
    let err = |e: bptt::error::BpttError| e.to_string();
    match arch {
        Arch::StackedBi => {
            let l0 = Bidirectional::new(make(d, h, rng), make(d, h, rng));
            let l1 = Bidirectional::new(make(2 * h, h, rng), make(2 * h, h, rng));
            let net = Stacked::new(vec![l0, l1]).map_err(err)?;
            let p = network_problem(net, row, rng);
            check_row(&p.model.net.name(), &p, net_oracles(&p, 1)?, row, args)
        }
        Arch::Residual => {
            let widths = [(d, h), (h, h + 1), (h + 1, h + 1)];
            let layers = widths
                .iter()
                .map(|&(i, o)| Residual::new(Unidirectional::new(make(i, o, rng)), rng))
                .collect();
            let net = Stacked::new(layers).map_err(err)?;
            let p = network_problem(net, row, rng);
            check_row(&p.model.net.name(), &p, net_oracles(&p, 1)?, row, args)
        }
        Arch::Dense => {
            let layers = (0..3)
                .map(|l| Unidirectional::new(make(d + l * h, h, rng)))
                .collect();
            let net = Dense::new(layers).map_err(err)?;
            let p = network_problem(net, row, rng);
            check_row(&p.model.net.name(), &p, net_oracles(&p, 1)?, row, args)
        }
    }
}

fn check_arch_kind(
    kind: CellKind,
    arch: Arch,
    row: &Row,
    args: &Args,
    rng: &mut Rng,
) -> Result<(CheckRow, String), String> {
    let bound = 1.0 / (row.size.hidden as f64).sqrt();
    let make = |d, h, r: &mut Rng| kind.uniform::<f64>(d, h, bound, r);
    check_arch(arch, make, row, args, rng)
}

/// One problem: a cell alone (`arch` = `None`) or an architecture over it, at one row.
#[derive(Clone, Copy)]
struct Item {
    cell: CellKind,
    arch: Option<Arch>,
    row: Row,
}

/// Every problem, in table order: each cell at each size and loss placement, then each
/// architecture over each cell. Problem `i` draws from stream `i + 1` of the seed.
fn items() -> Vec<Item> {
    let placements = [(LossAt::Last, true), (LossAt::EveryStep, false)];
    let mut v = Vec::new();
    for &cell in CellKind::ALL {
        for size in SIZES {
            for (at, classify) in placements {
                let row = Row { size, at, classify };
                v.push(Item {
                    cell,
                    arch: None,
                    row,
                });
            }
        }
    }
    for arch in [Arch::StackedBi, Arch::Residual, Arch::Dense] {
        for &cell in CellKind::ALL {
            for (at, classify) in placements {
                let row = Row {
                    size: ARCH_SIZE,
                    at,
                    classify,
                };
                v.push(Item {
                    cell,
                    arch: Some(arch),
                    row,
                });
            }
        }
    }
    v
}

/// The gradient proof as a driver experiment: one chunk per problem, in order.
struct Gradcheck {
    args: Args,
    items: Vec<Item>,
}

impl Experiment for Gradcheck {
    const NAME: &'static str = "gradcheck";
    const UNIT: &'static str = "problems";

    fn plan(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.args.shard.seed,
            "tolerance": self.args.tolerance,
            "verbose": self.args.verbose,
            "problems": self.items.len(),
            "cells": CellKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>(),
        })
    }
    fn tables(&self) -> Vec<Table> {
        vec![Table::of::<CheckRow>("gradcheck.csv")]
    }
    fn chunks(&self) -> usize {
        self.items.len()
    }
    fn parallel_chunks(&self) -> bool {
        true
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let item = &self.items[index];
        let rng = &mut stream(self.args.shard.seed, &[index as u64 + 1]);
        let (row, detail) = match item.arch {
            None => check_cell(item.cell, &item.row, &self.args, rng)?,
            Some(arch) => check_arch_kind(item.cell, arch, &item.row, &self.args, rng)?,
        };
        if !detail.is_empty() {
            // the worst entries of a failing (or, --verbose, every) problem
            eprint!("{detail}");
        }
        ctx.progress(1);
        let mut rows = Rows::new(1);
        rows.push(0, &row);
        Ok(rows)
    }

    fn summarize(_plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let rows: Vec<CheckRow> = out.rows("gradcheck.csv")?;
        let mut table = format!(
            "{:<24} {:>10} {:<5} {:<5} {:>7} {:>9} {:>5} {:>5} {:>9} {:>5} {:>9} {:>9} {:<5}\n",
            "network",
            "H,D,T,B",
            "loss",
            "at",
            "entries",
            "FD err",
            "unres",
            "kinks",
            "Rich err",
            "incon",
            "dual adj",
            "f32 err",
            "verdict"
        );
        for r in &rows {
            writeln!(
                table,
                "{:<24} {:>10} {:<5} {:<5} {:>7} {:>9.1e} {:>5} {:>5} {:>9.1e} {:>5} {:>9.1e} {:>9.1e} {:<5}",
                r.network,
                format!("{},{},{},{}", r.hidden, r.input, r.steps, r.batch),
                r.loss,
                r.at,
                r.entries,
                r.fd_error,
                r.unresolved,
                r.kinks,
                r.richardson_error,
                r.inconsistent,
                r.dual_adjoint_error,
                r.f32_error,
                r.verdict
            )
            .unwrap();
        }
        let failed = rows.iter().filter(|r| r.verdict != "PASS").count();
        if failed == 0 {
            table += "\nall problems PASS: every analytic gradient agrees with central differences \
                (FD err ≤ tolerance), with Richardson extrapolation within its own error estimate \
                (incon = 0), and with the exact dual-number adjoint identity (dual adj ≤ 1e-12·κ)";
        }
        Ok(Summary {
            results: serde_json::json!({
                "problems": rows.len(),
                "passed": rows.len() - failed,
                "failed": failed,
            }),
            failure: (failed > 0).then(|| format!("{failed} problem(s) FAILED")),
            table,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        if !(args.tolerance > 0.0 && args.tolerance.is_finite()) {
            return Err(format!(
                "--tolerance must be a positive number, got {}",
                args.tolerance
            ));
        }
        Ok(Gradcheck {
            items: items(),
            args: args.clone(),
        })
    })
}
