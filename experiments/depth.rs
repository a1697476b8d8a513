//! `depth`: deep recurrent stacks — plain, residual and dense stacks of 1…L layers of a cell,
//! at initialisation (the gradient norm reaching every layer's parameters, the first layer's
//! input, and the depth × time map `‖∂L/∂h^{(l)}_t‖`) and in training (test error and updates to
//! success on one task against depth).
//!
//! Output (schemas in experiments/README.md): `layers.csv` and `map.csv` (initialisation),
//! `training.csv` and `curves.csv` (training), `depth.json` (provenance). Exit status: 0 done,
//! 1 I/O or numerical failure, 2 bad arguments.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use bptt::experiment::depth::{
    self, ALL_ARCHITECTURES, Architecture, DepthGradients, Hyper, Item, Outcome, Setup, purpose,
};
use bptt::experiment::driver::{
    self, CommonArgs, Context, Experiment, Outputs, Rows, ShardArgs, Summary, Table,
};
use bptt::experiment::tasks::Task;
use bptt::nn::cells::CellKind;
use bptt::train::optim::Optimizer;
use clap::Parser;

/// Error rate below which a task counts as solved (validation, then the final test).
const SUCCESS_ERROR: f64 = 0.01;
/// The deepest stack accepted (the trainer keeps up to 64 initial states).
const MAX_DEPTH: usize = bptt::train::trainer::MAX_STATES;

/// One row of `layers.csv`: one layer of one stack at initialisation.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct LayerRow {
    cell: String,
    architecture: String,
    layers: usize,
    seed: u64,
    /// 1-based, from the input up.
    layer: usize,
    /// Trainable scalars of the layer (its cell; and the skip projection of a residual first layer).
    parameters: usize,
    /// ‖∂L/∂θ_l‖ over every parameter of the layer.
    grad_norm: f64,
    /// The loss at initialisation (the same on every row of a stack).
    loss: f64,
}

/// One row of `map.csv`: the gradient at one layer and step at initialisation.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct MapRow {
    cell: String,
    architecture: String,
    layers: usize,
    seed: u64,
    /// 0: the input, ∂L/∂x_t; l ≥ 1: the hidden state of layer l, ∂L/∂h^{(l)}_t.
    layer: usize,
    /// t = 1..T.
    step: usize,
    /// T − t.
    distance: usize,
    /// Batch mean of the per-sequence Euclidean norms.
    grad_norm: f64,
}

/// One row of `training.csv`: one trained stack.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct TrainingRow {
    cell: String,
    architecture: String,
    layers: usize,
    seed: u64,
    /// Trainable scalars of the network and its readout.
    parameters: usize,
    updates: u64,
    test_error: f64,
    success: u8,
    diverged: u8,
}

/// One row of `curves.csv`: a logged update of one training run.
#[derive(serde::Serialize, Default)]
struct CurveRow<'a> {
    cell: &'a str,
    architecture: &'a str,
    layers: usize,
    seed: u64,
    update: u64,
    loss: f64,
    grad_norm: f64,
    /// Empty where the update was not validated.
    valid_error: Option<f64>,
}

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "depth",
    version,
    about = "Deep RNN stacks: plain vs residual vs dense, the gradient at initialisation and trainability against depth.",
    long_about = "Deep RNN stacks: plain vs residual vs dense, the gradient at initialisation and trainability against depth.\n\n\
        A multi-layer RNN is deep in two directions, time and layers. The lecture's claim: deep stacks \
        train badly unless skip connections give the gradient a short path. Every work item is one \
        stack (cell × architecture × depth × seed) of --hidden units per layer, PyTorch's default \
        initialisation (every weight and bias U(−1/√H, 1/√H); the readout and a residual first layer's \
        skip projection as nn.Linear), reading the task's one-hot inputs:\n\n\
        plain     layer l reads layer l−1's outputs (PyTorch num_layers);\n\
        residual  y_l = h_l + y_{l−1} around every layer above the first (identity skip); the first \
        reads D ≠ H units, so its skip is a learned projection, y_1 = h_1 + P x;\n\
        dense     layer l reads [x; h_1; …; h_{l−1}] (DenseNet-like).\n\n\
        --part init: on one batch of --init-batch task sequences of length --length (the same batch for \
        every stack of a seed), the cross-entropy of a linear readout of the top output at the last step: \
        ‖∂L/∂θ_l‖ per layer (layers.csv), and the batch-mean norms of ∂L/∂h^{(l)}_t for every layer and \
        step and of ∂L/∂x_t at the input (map.csv). Stacks of every --depths, --init-seeds seeds.\n\n\
        --part train: the stacks of every --train-depths trained on the task (Adam, global-norm clipping; \
        minibatches of fresh sequences; validation every --eval-every updates; when the validation error \
        drops below 1% the final test on --test-sequences fresh sequences decides, and a success ends the \
        run): training.csv (test error, updates, success), curves.csv. --seeds seeds.\n\n\
        Randomness: ChaCha8 streams per (cell, seed, purpose); stacks of one cell and seed share layer \
        weights, measurement batch and training batches (common random numbers). Items run in parallel \
        and each is a resumable chunk; the output does not depend on --threads or --shard.\n\n\
        --quick: a seconds-long run of the same plan at toy sizes (for CI).\n\n\
        Example: depth --part init --cells lstm --depths 1,2,4,8 --init-seeds 20"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    shard: ShardArgs,
    /// What to run: init (gradients at initialisation), train (trainability), or all
    #[arg(long, default_value = "all", value_parser = ["init", "train", "all"])]
    part: String,
    /// Toy sizes for CI: every size flag not given takes its --quick value (in brackets below)
    #[arg(long)]
    quick: bool,
    /// Cells, comma-separated (any registered cell) [default: rnn-tanh,lstm,gru]
    #[arg(long, value_delimiter = ',')]
    cells: Vec<String>,
    /// Architectures, comma-separated: plain, residual, dense [default: all]
    #[arg(long, value_delimiter = ',')]
    architectures: Vec<String>,
    /// Depths of the initialisation part [default: 1,2,3,4,5,6,7,8; quick: 1,2,3]
    #[arg(long, value_delimiter = ',')]
    depths: Vec<usize>,
    /// Depths of the training part [default: 1,2,4,8; quick: 1,3]
    #[arg(long, value_delimiter = ',')]
    train_depths: Vec<usize>,
    /// Seeds of the initialisation part [default: 10; quick: 2]
    #[arg(long)]
    init_seeds: Option<u64>,
    /// Seeds of the training part [default: 3; quick: 2]
    #[arg(long)]
    seeds: Option<u64>,
    /// Task (a classification at the last step): temporal-order, temporal-order-3bit, permutation
    #[arg(long, default_value = "temporal-order")]
    task: String,
    /// Sequence length T of the measurement and of training [default: 30; quick: 12]
    #[arg(long)]
    length: Option<usize>,
    /// Hidden units per layer [default: 32; quick: 8]
    #[arg(long)]
    hidden: Option<usize>,
    /// Sequences of the measurement batch at initialisation [default: 100; quick: 16]
    #[arg(long)]
    init_batch: Option<usize>,
    /// Sequences per training minibatch [default: 20; quick: 8]
    #[arg(long)]
    batch: Option<usize>,
    /// Adam's learning rate
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Global-norm clipping threshold
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Update budget per training run [default: 1500; quick: 40]
    #[arg(long)]
    updates: Option<u64>,
    /// Validate every N updates [default: 100; quick: 20]
    #[arg(long)]
    eval_every: Option<u64>,
    /// Fresh sequences per validation [default: 500; quick: 50]
    #[arg(long)]
    eval_sequences: Option<usize>,
    /// Fresh sequences of the final test [default: 2000; quick: 100]
    #[arg(long)]
    test_sequences: Option<usize>,
    /// Write a learning-curve row every N updates [default: 10; quick: 5]
    #[arg(long)]
    log_every: Option<u64>,
}

/// The resolved work of a run: what a resumed run must match.
#[derive(Clone, Debug, serde::Serialize)]
struct Plan {
    init: bool,
    train: bool,
    cells: Vec<CellKind>,
    architectures: Vec<Architecture>,
    depths: Vec<usize>,
    train_depths: Vec<usize>,
    init_seeds: u64,
    seeds: u64,
    setup: Setup,
    init_batch: usize,
    hyper: Hyper,
    seed: u64,
}

impl Plan {
    /// Whether `item` is measured at initialisation / trained.
    fn measures(&self, item: &Item) -> bool {
        self.init && item.replicate < self.init_seeds && self.depths.contains(&item.depth)
    }
    fn trains(&self, item: &Item) -> bool {
        self.train && item.replicate < self.seeds && self.train_depths.contains(&item.depth)
    }

    /// Every item with work, in (cell, architecture, depth, seed) order.
    fn items(&self) -> Vec<Item> {
        let depths: BTreeSet<usize> = self
            .depths
            .iter()
            .chain(&self.train_depths)
            .copied()
            .collect();
        let seeds = self.init_seeds.max(self.seeds);
        let mut v = Vec::new();
        for &cell in &self.cells {
            for &architecture in &self.architectures {
                for &depth in &depths {
                    for replicate in 0..seeds {
                        let item = Item {
                            cell,
                            architecture,
                            depth,
                            replicate,
                        };
                        if self.measures(&item) || self.trains(&item) {
                            v.push(item);
                        }
                    }
                }
            }
        }
        v
    }
}

/// `given`, else the `--quick` or the default value.
fn pick<T: Copy>(given: Option<T>, quick: bool, q: T, default: T) -> T {
    given.unwrap_or(if quick { q } else { default })
}

fn plan(a: &Args) -> Result<Plan, String> {
    let q = a.quick;
    let (init, train) = match a.part.as_str() {
        "init" => (true, false),
        "train" => (false, true),
        _ => (true, true),
    };
    let cells: Vec<CellKind> = if a.cells.is_empty() {
        vec![CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru]
    } else {
        a.cells
            .iter()
            .map(|c| c.parse().map_err(|e: bptt::error::BpttError| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    let architectures: Vec<Architecture> = if a.architectures.is_empty() {
        ALL_ARCHITECTURES.to_vec()
    } else {
        a.architectures
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?
    };
    let list = |given: &[usize], quick: &[usize], default: &[usize]| -> Vec<usize> {
        if !given.is_empty() {
            given.to_vec()
        } else if q {
            quick.to_vec()
        } else {
            default.to_vec()
        }
    };
    let depths = list(&a.depths, &[1, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let train_depths = list(&a.train_depths, &[1, 3], &[1, 2, 4, 8]);
    for (flag, ds) in [("depths", &depths), ("train-depths", &train_depths)] {
        if let Some(&d) = ds.iter().find(|&&d| d == 0 || d > MAX_DEPTH) {
            return Err(format!(
                "--{flag}: depth {d} is out of range (1 to {MAX_DEPTH} layers)"
            ));
        }
    }
    let task: Task = a.task.parse()?;
    if !matches!(
        task,
        Task::TemporalOrder | Task::TemporalOrder3Bit | Task::Permutation
    ) {
        return Err(format!(
            "task '{task}' is not classified at the last step: the depth experiment takes \
             temporal-order, temporal-order-3bit or permutation"
        ));
    }
    let init_seeds = pick(a.init_seeds, q, 2, 10);
    let seeds = pick(a.seeds, q, 2, 3);
    let length = pick(a.length, q, 12, 30);
    let hidden = pick(a.hidden, q, 8, 32);
    let init_batch = pick(a.init_batch, q, 16, 100);
    let batch = pick(a.batch, q, 8, 20);
    let updates = pick(a.updates, q, 40, 1500);
    let eval_every = pick(a.eval_every, q, 20, 100);
    let eval_sequences = pick(a.eval_sequences, q, 50, 500);
    let test_sequences = pick(a.test_sequences, q, 100, 2000);
    let log_every = pick(a.log_every, q, 5, 10);
    let positive = |what: &str, v: u64| {
        if v == 0 {
            Err(format!("--{what} must be at least 1"))
        } else {
            Ok(())
        }
    };
    if init {
        positive("init-seeds", init_seeds)?;
        positive("init-batch", init_batch as u64)?;
    }
    if train {
        positive("seeds", seeds)?;
        positive("batch", batch as u64)?;
        positive("updates", updates)?;
        positive("eval-every", eval_every)?;
        positive("eval-sequences", eval_sequences as u64)?;
        positive("test-sequences", test_sequences as u64)?;
        positive("log-every", log_every)?;
    }
    positive("hidden", hidden as u64)?;
    if length < task.min_length() {
        return Err(format!(
            "--length {length} is below the minimum {} of {task}",
            task.min_length()
        ));
    }
    if !(a.clip > 0.0 && a.clip.is_finite()) {
        return Err(format!("--clip must be a positive number, got {}", a.clip));
    }
    let optimizer = Optimizer::adam(a.lr);
    optimizer.validate().map_err(|e| e.to_string())?;
    // the item list and its rows, held at once, and every worker's largest workspace: the
    // deepest dense stack's tapes and state gradients over the measurement batch, in f64
    let deepest = depths
        .iter()
        .chain(&train_depths)
        .max()
        .copied()
        .unwrap_or(1) as u128;
    let items = (cells.len() as u128)
        .checked_mul(architectures.len() as u128)
        .and_then(|x| x.checked_mul(deepest))
        .and_then(|x| x.checked_mul(u128::from(init_seeds.max(seeds))));
    let (h, t) = (hidden as u128, length as u128);
    let widest_batch = init_batch.max(batch).max(500) as u128;
    let estimate = items.and_then(|n| {
        let rows = n.checked_mul(deepest.checked_add(1)?.checked_mul(t)?.checked_add(200)?)?;
        let per_layer = (8 * h + 8 + task.input_size() as u128)
            .checked_add(deepest.checked_mul(h)?)?
            .checked_mul(t)?
            .checked_mul(widest_batch)?
            .checked_mul(16)?;
        let per_worker = per_layer.checked_mul(deepest)?;
        rows.checked_mul(128)?
            .checked_add(per_worker.checked_mul(rayon::current_num_threads().max(1) as u128)?)
    });
    driver::check_plan_memory(
        estimate,
        &format!(
            "{} stacks of up to {deepest} layers",
            items.unwrap_or(u128::MAX)
        ),
    )?;
    Ok(Plan {
        init,
        train,
        cells,
        architectures,
        depths,
        train_depths,
        init_seeds,
        seeds,
        setup: Setup {
            task,
            hidden,
            length,
        },
        init_batch,
        hyper: Hyper {
            batch,
            optimizer,
            clip: a.clip,
            updates,
            eval_every,
            eval_sequences,
            test_sequences,
            log_every,
            success_error: SUCCESS_ERROR,
        },
        seed: a.shard.seed,
    })
}

/// The experiment: one chunk per item, items in parallel.
struct DepthRun {
    plan: Plan,
    items: Vec<Item>,
}

/// Table indices of the parts present: (layers, map) and (training, curves).
fn table_indices(init: bool) -> (usize, usize, usize, usize) {
    if init { (0, 1, 2, 3) } else { (0, 0, 0, 1) }
}

impl DepthRun {
    fn measure_rows(&self, item: &Item, g: &DepthGradients, rows: &mut Rows) {
        let (layers_t, map_t, _, _) = table_indices(true);
        let (cell, architecture) = (item.cell.name().to_string(), item.architecture.to_string());
        let (norms, parameters) = (g.layer_norms(), g.layer_parameters());
        for (l, (&grad_norm, &parameters)) in norms.iter().zip(&parameters).enumerate() {
            rows.push(
                layers_t,
                &LayerRow {
                    cell: cell.clone(),
                    architecture: architecture.clone(),
                    layers: item.depth,
                    seed: item.replicate,
                    layer: l + 1,
                    parameters,
                    grad_norm,
                    loss: g.loss,
                },
            );
        }
        let steps = self.plan.setup.length;
        let map = g.map();
        let input = g.input_norms();
        for (layer, norms) in std::iter::once(&input).chain(&map).enumerate() {
            for (t, &grad_norm) in norms.iter().enumerate() {
                rows.push(
                    map_t,
                    &MapRow {
                        cell: cell.clone(),
                        architecture: architecture.clone(),
                        layers: item.depth,
                        seed: item.replicate,
                        layer,
                        step: t + 1,
                        distance: steps - (t + 1),
                        grad_norm,
                    },
                );
            }
        }
    }

    fn training_rows(&self, item: &Item, parameters: usize, o: &Outcome, rows: &mut Rows) {
        let (_, _, training_t, curves_t) = table_indices(self.plan.init);
        let (cell, architecture) = (item.cell.name(), item.architecture.to_string());
        for p in &o.curve {
            rows.push(
                curves_t,
                &CurveRow {
                    cell,
                    architecture: &architecture,
                    layers: item.depth,
                    seed: item.replicate,
                    update: p.update,
                    loss: p.loss,
                    grad_norm: p.grad_norm,
                    valid_error: p.valid_error,
                },
            );
        }
        rows.push(
            training_t,
            &TrainingRow {
                cell: cell.to_string(),
                architecture: architecture.clone(),
                layers: item.depth,
                seed: item.replicate,
                parameters,
                updates: o.updates,
                test_error: o.test_error,
                success: u8::from(o.success),
                diverged: u8::from(o.diverged),
            },
        );
    }
}

impl Experiment for DepthRun {
    const NAME: &'static str = "depth";
    const UNIT: &'static str = "stacks";

    fn plan(&self) -> serde_json::Value {
        serde_json::to_value(&self.plan).expect("the plan serializes")
    }
    fn tables(&self) -> Vec<Table> {
        let mut t = Vec::new();
        if self.plan.init {
            t.push(Table::of::<LayerRow>("layers.csv"));
            t.push(Table::of::<MapRow>("map.csv"));
        }
        if self.plan.train {
            t.push(Table::of::<TrainingRow>("training.csv"));
            t.push(Table::of::<CurveRow>("curves.csv"));
        }
        t
    }
    fn chunks(&self) -> usize {
        self.items.len()
    }
    fn parallel_chunks(&self) -> bool {
        true
    }
    fn compute(&self, index: usize, ctx: &Context<'_>) -> Result<Rows, String> {
        let (item, plan) = (&self.items[index], &self.plan);
        let fail = |e: bptt::error::BpttError| format!("{}: {e}", item.id());
        let mut rows = Rows::new(self.tables().len());
        if plan.measures(item) {
            let (net, readout) = depth::build_model(item, &plan.setup, plan.seed).map_err(fail)?;
            // the same batch for every stack of a seed: the cell is not in its path either
            let mut rng = bptt::rng::stream(plan.seed, &[item.replicate, purpose::INIT_BATCH]);
            let batch = plan
                .setup
                .task
                .generate(&mut rng, plan.init_batch, plan.setup.length)
                .map_err(fail)?;
            let g = depth::init_gradients(&net, &readout, &batch).map_err(fail)?;
            self.measure_rows(item, &g, &mut rows);
        }
        if plan.trains(item) {
            let (net, readout) = depth::build_model(item, &plan.setup, plan.seed).map_err(fail)?;
            let readout_scalars: usize = readout.params().iter().map(|(_, m)| m.len()).sum();
            let parameters = net.parameter_count() + readout_scalars;
            let o = depth::train(item, &plan.setup, &plan.hyper, plan.seed).map_err(fail)?;
            self.training_rows(item, parameters, &o, &mut rows);
        }
        ctx.progress(1);
        Ok(rows)
    }

    fn summarize(plan: &serde_json::Value, out: &Outputs<'_>) -> Result<Summary, String> {
        let mut table = String::new();
        let mut results = serde_json::Map::new();
        let key = |c: &str, a: &str| (c.to_string(), a.to_string());
        if plan["init"] == true {
            let layers: Vec<LayerRow> = out.rows("layers.csv")?;
            let map: Vec<MapRow> = out.rows("map.csv")?;
            let (groups, depths) = groups_and_depths(
                layers
                    .iter()
                    .map(|r| (key(&r.cell, &r.architecture), r.layers)),
            );
            // geometric means over seeds (gradient norms spread over orders of magnitude)
            let geo = |v: Vec<f64>| -> f64 {
                (v.iter().map(|x| x.ln()).sum::<f64>() / v.len().max(1) as f64).exp()
            };
            let theta1 = |g: &(String, String), d: usize| {
                geo(layers
                    .iter()
                    .filter(|r| {
                        key(&r.cell, &r.architecture) == *g && r.layers == d && r.layer == 1
                    })
                    .map(|r| r.grad_norm)
                    .collect())
            };
            let corner = |g: &(String, String), d: usize| {
                geo(map
                    .iter()
                    .filter(|r| {
                        key(&r.cell, &r.architecture) == *g
                            && r.layers == d
                            && r.layer == 1
                            && r.step == 1
                    })
                    .map(|r| r.grad_norm)
                    .collect())
            };
            let mut rows = Vec::new();
            for (title, f) in [
                (
                    "‖∂L/∂θ_1‖, the first layer's parameters",
                    &theta1 as &dyn Fn(&(String, String), usize) -> f64,
                ),
                (
                    "‖∂L/∂h^(1)_1‖, the first layer at the first step (T−1 steps and L−1 layers from the loss)",
                    &corner,
                ),
            ] {
                write!(table, "\nat initialisation — {title} (geometric mean over {} seeds), by depth:\n{:<10} {:<10}", plan["init_seeds"], "cell", "arch").unwrap();
                for d in &depths {
                    write!(table, " {:>9}", format!("L={d}")).unwrap();
                }
                for g in &groups {
                    write!(table, "\n{:<10} {:<10}", g.0, g.1).unwrap();
                    for &d in &depths {
                        let v = f(g, d);
                        write!(table, " {v:>9.2e}").unwrap();
                        if title.starts_with("‖∂L/∂θ_1‖") {
                            rows.push(serde_json::json!({"cell": g.0, "architecture": g.1, "layers": d, "layer1_grad_norm": v, "first_step_hidden_grad_norm": corner(g, d)}));
                        }
                    }
                }
                table.push('\n');
            }
            results.insert("init".into(), serde_json::Value::Array(rows));
        }
        if plan["train"] == true {
            let runs: Vec<TrainingRow> = out.rows("training.csv")?;
            let (groups, depths) = groups_and_depths(
                runs.iter()
                    .map(|r| (key(&r.cell, &r.architecture), r.layers)),
            );
            write!(table, "\ntrainability — successes of {} seeds (median test error), by depth:\n{:<10} {:<10}", plan["seeds"], "cell", "arch").unwrap();
            for d in &depths {
                write!(table, " {:>13}", format!("L={d}")).unwrap();
            }
            let mut rows = Vec::new();
            for g in &groups {
                write!(table, "\n{:<10} {:<10}", g.0, g.1).unwrap();
                for &d in &depths {
                    let these: Vec<&TrainingRow> = runs
                        .iter()
                        .filter(|r| key(&r.cell, &r.architecture) == *g && r.layers == d)
                        .collect();
                    let wins = these.iter().filter(|r| r.success == 1).count();
                    let mut errs: Vec<f64> = these.iter().map(|r| r.test_error).collect();
                    errs.sort_by(f64::total_cmp);
                    let median = if errs.is_empty() {
                        f64::NAN
                    } else if errs.len() % 2 == 1 {
                        errs[errs.len() / 2]
                    } else {
                        0.5 * (errs[errs.len() / 2 - 1] + errs[errs.len() / 2])
                    };
                    let mut ups: Vec<u64> = these
                        .iter()
                        .filter(|r| r.success == 1)
                        .map(|r| r.updates)
                        .collect();
                    ups.sort_unstable();
                    write!(
                        table,
                        " {:>13}",
                        format!("{wins}/{} ({median:.3})", these.len())
                    )
                    .unwrap();
                    rows.push(serde_json::json!({
                        "cell": g.0, "architecture": g.1, "layers": d, "runs": these.len(),
                        "successes": wins, "median_test_error": median,
                        "updates_of_successes": ups,
                    }));
                }
            }
            table.push('\n');
            results.insert("train".into(), serde_json::Value::Array(rows));
        }
        Ok(Summary {
            results: serde_json::Value::Object(results),
            table,
            failure: None,
        })
    }
}

/// The (cell, architecture) groups in order of appearance and the sorted depths.
fn groups_and_depths(
    rows: impl Iterator<Item = ((String, String), usize)>,
) -> (Vec<(String, String)>, Vec<usize>) {
    let mut groups = Vec::new();
    let mut depths = BTreeSet::new();
    for (g, d) in rows {
        if !groups.contains(&g) {
            groups.push(g);
        }
        depths.insert(d);
    }
    (groups, depths.into_iter().collect())
}

fn main() -> ExitCode {
    let args = Args::parse();
    driver::drive(&args.common, Some(&args.shard), &args, || {
        let plan = plan(&args)?;
        Ok(DepthRun {
            items: plan.items(),
            plan,
        })
    })
}
