//! The engine allocates nothing inside the time loop, and nothing per call once its workspaces
//! are warm: a counting global allocator (per thread, so parallel tests do not disturb it)
//! counts the allocations of each repeated call after one warm-up call, for every cell, every
//! backward mode, token and dense inputs, the sweep's measurement and a whole training update
//! (forward, loss, BPTT, Ω, clipping, optimizer step).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell as StdCell;

use bptt::experiment::pathological::{Algorithm, Hyper, Init};
use bptt::experiment::tasks::Task;
use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{self, Inputs, MatRef, Tape, Upstream, Want};
use bptt::nn::sequence::Truncation;
use bptt::rng::{stream, uniform_matrix};
use bptt::train::optim::Optimizer;
use nalgebra::{DMatrix, DVector};

struct Counting;

thread_local! {
    static ALLOCATIONS: StdCell<u64> = const { StdCell::new(0) };
}

// SAFETY: forwards every call to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(|n| n.get());
    f();
    ALLOCATIONS.with(|n| n.get()) - before
}

/// Warm `tape` with one forward/backward pass, then count a second and third (repeated calls
/// at the same shapes) for every backward mode.
fn engine_is_allocation_free<C: Cell<f64>>(cell: &C, tokens: bool) {
    let (steps, batch) = (30, 7);
    let mut rng = stream(5, &[tokens as u64]);
    let d = cell.input_size();
    let ids: Vec<usize> = (0..steps * batch).map(|j| (j * 7 + 3) % d).collect();
    let x_dense = uniform_matrix::<f64>(&mut rng, d, steps * batch, 1.0);
    let x = if tokens {
        Inputs::Tokens {
            ids: &ids,
            vocab: d,
        }
    } else {
        Inputs::Dense(MatRef::from(&x_dense))
    };
    let s0 = uniform_matrix::<f64>(&mut rng, cell.state_size(), batch, 0.5);
    let d_out = uniform_matrix::<f64>(&mut rng, cell.hidden_size(), steps * batch, 1.0);
    let up = Upstream {
        d_outputs: Some(MatRef::from(&d_out)),
        ..Upstream::default()
    };
    let mut tape = Tape::default();
    let mut grads = cell.params().zeros_like();
    let mut run = |want: Want, truncation: Truncation| {
        engine::forward(cell, x, MatRef::from(&s0), &mut tape, None).unwrap();
        let g = want.params.then_some(grads.as_mut_slice());
        engine::backward(cell, x, &mut tape, &up, truncation, want, g, None).unwrap();
    };
    for (want, truncation) in [
        (Want::PARAMS, Truncation::Full),
        (Want::STATES, Truncation::Full),
        (Want::STATES_ONLY, Truncation::Full),
        (Want::PARAMS, Truncation::Chunks(4)),
    ] {
        run(want, truncation);
        for _ in 0..2 {
            let n = allocations(|| run(want, truncation));
            assert_eq!(
                n,
                0,
                "{} ({}): {n} allocations in a warm forward/backward, {want:?}",
                cell.name(),
                if tokens { "tokens" } else { "dense" }
            );
        }
    }
}

fn cells() -> (Vec<VanillaRnn<f64>>, Lstm<f64>, Vec<Gru<f64>>) {
    let mut rng = stream(1, &[]);
    let rnns = Activation::ALL
        .iter()
        .map(|&a| VanillaRnn::pytorch_init(9, 16, a, &mut rng))
        .collect();
    let lstm = Lstm::pytorch_init(9, 16, (), &mut rng);
    let grus = [GruVariant::ResetAfter, GruVariant::ResetBefore]
        .iter()
        .map(|&v| Gru::pytorch_init(9, 16, v, &mut rng))
        .collect();
    (rnns, lstm, grus)
}

#[test]
fn the_counter_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
    // a cold tape allocates
    let (rnns, _, _) = cells();
    let x = DMatrix::<f64>::zeros(9, 6);
    let s0 = DMatrix::<f64>::zeros(16, 2);
    let n = allocations(|| {
        let mut tape = Tape::default();
        engine::forward(
            &rnns[0],
            Inputs::Dense(MatRef::from(&x)),
            MatRef::from(&s0),
            &mut tape,
            None,
        )
        .unwrap();
    });
    assert!(n > 0);
}

#[test]
fn warm_engine_passes_allocate_nothing_for_every_cell() {
    let (rnns, lstm, grus) = cells();
    for tokens in [false, true] {
        for c in &rnns {
            engine_is_allocation_free(c, tokens);
        }
        engine_is_allocation_free(&lstm, tokens);
        for c in &grus {
            engine_is_allocation_free(c, tokens);
        }
    }
}

#[test]
fn warm_sweep_measurement_allocates_only_its_result() {
    let (rnns, lstm, _) = cells();
    let mut ws = bptt::experiment::sweep::Workspace::new(16);
    let xs = uniform_matrix::<f64>(&mut stream(2, &[]), 9, 20 * 4, 1.0);
    let v = DVector::from_element(16, 0.25);
    for cell in &rnns {
        ws.grad_norms(cell, &xs, &v, 4).unwrap();
        // the two result vectors (and their growth while collecting) — nothing per step
        let n = allocations(|| drop(ws.grad_norms(cell, &xs, &v, 4).unwrap()));
        assert!(n <= 8, "{}: {n} allocations", cell.name());
    }
    ws.grad_norms(&lstm, &xs, &v, 4).unwrap();
    let n = allocations(|| drop(ws.grad_norms(&lstm, &xs, &v, 4).unwrap()));
    assert!(n <= 8, "lstm: {n} allocations");
}

#[test]
fn warm_training_update_allocates_nothing() {
    // one update of Pascanu's setting (SGD-CR: Ω, clipping, momentum, the safety net) at two
    // lengths: nothing at all once warm
    let task = Task::TemporalOrder;
    let mut model = Init::SmartTanh
        .build(task, 20, &mut stream(3, &[]))
        .unwrap();
    let h = Hyper {
        hidden: 20,
        optimizer: Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.9,
        },
        ..Hyper::default()
    };
    let mut ws =
        bptt::train::trainer::Trainer::new(&model, Algorithm::SgdCR.config(task, &h)).unwrap();
    let mut counts = Vec::new();
    for length in [50, 200] {
        let batch = task
            .generate(&mut stream(4, &[length as u64]), 10, length)
            .unwrap();
        ws.update(&mut model, &batch.for_trainer()).unwrap();
        let n = allocations(|| {
            ws.update(&mut model, &batch.for_trainer()).unwrap();
        });
        counts.push(n);
    }
    assert_eq!(counts, [0, 0], "allocations per warm update at T = 50, 200");
}

#[test]
fn warm_network_updates_allocate_nothing() {
    use bptt::nn::arch::{Bidirectional, Residual, Stacked, Unidirectional};
    use bptt::nn::model::NetworkModel;
    use bptt::nn::readout::Readout;
    use bptt::train::trainer::{Batch, Config, Loss, ReadoutAt, Targets, Trainer};
    let mut rng = stream(7, &[]);
    let ids: Vec<usize> = (0..12 * 4).map(|j| (j * 5 + 1) % 9).collect();
    let classes: Vec<usize> = (0..12 * 4).map(|j| j % 3).collect();
    let batch = Batch {
        inputs: Inputs::Tokens {
            ids: &ids,
            vocab: 9,
        },
        batch: 4,
        targets: Targets::Classes(&classes),
    };
    let cfg = Config {
        readout_at: ReadoutAt::EveryStep,
        loss: Loss::SoftmaxCrossEntropy,
        optimizer: bptt::train::optim::Optimizer::adam(1e-3),
        carry_state: true,
        safety_net: true,
        ..Config::default()
    };
    // a 2-layer bidirectional LSTM (f32) and a residual stack of GRUs (f64)
    let lstm = |d, rng: &mut bptt::rng::Rng| Lstm::<f32>::pytorch_init(d, 6, (), rng);
    let bi = Stacked::new(vec![
        Bidirectional::new(lstm(9, &mut rng), lstm(9, &mut rng)),
        Bidirectional::new(lstm(12, &mut rng), lstm(12, &mut rng)),
    ])
    .unwrap();
    let mut m = NetworkModel::new(bi, Readout::uniform(12, 3, 0.3, &mut rng)).unwrap();
    let mut tr = Trainer::new(&m, cfg).unwrap();
    tr.update(&mut m, &batch).unwrap();
    let n = allocations(|| {
        tr.update(&mut m, &batch).unwrap();
    });
    assert_eq!(n, 0, "2x bi-lstm f32: allocations per warm update");

    let gru = |d, rng: &mut bptt::rng::Rng| {
        Unidirectional::new(Gru::<f64>::pytorch_init(d, 9, GruVariant::ResetAfter, rng))
    };
    let res = Stacked::new(vec![
        Residual::new(gru(9, &mut rng), &mut rng),
        Residual::new(gru(9, &mut rng), &mut rng),
    ])
    .unwrap();
    let batch64 = Batch {
        inputs: Inputs::Tokens {
            ids: &ids,
            vocab: 9,
        },
        batch: 4,
        targets: Targets::Classes(&classes),
    };
    let mut m = NetworkModel::new(res, Readout::uniform(9, 3, 0.3, &mut rng)).unwrap();
    let mut tr = Trainer::new(&m, cfg).unwrap();
    tr.update(&mut m, &batch64).unwrap();
    let n = allocations(|| {
        tr.update(&mut m, &batch64).unwrap();
    });
    assert_eq!(n, 0, "2x res-gru f64: allocations per warm update");
}
