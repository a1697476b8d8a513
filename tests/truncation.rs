//! Truncated BPTT, checked against an independent construction: run each chunk as its own
//! sequence from its (constant) start state with full BPTT, and add the chunks up.

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::sequence::{self, Truncation, Upstream};
use bptt::rng::stream;
use nalgebra::DMatrix;
use proptest::prelude::*;

proptest! {
    #![proptest_config(harness::config())]

    #[test]
    fn truncated_bptt_equals_the_sum_of_independent_chunks(case in harness::cases(), k1 in 1..=6usize) {
        let p = harness::problem(&case, |d, h, s, rng: &mut bptt::rng::Rng| VanillaRnn::uniform(d, h, Activation::Tanh, s, rng));
        let cell = &p.model.cell;
        let traj = sequence::forward(cell, &p.xs, &p.s0).unwrap();
        let up = harness::upstream(cell, &case, &mut stream(case.seed, &[3]));
        let g = sequence::backward(cell, &traj, &up, Truncation::Chunks(k1)).unwrap();

        let mut params = cell.params().zeros_like();
        for start in (0..case.steps).step_by(k1) {
            let end = (start + k1).min(case.steps);
            let chunk = sequence::forward(cell, &p.xs[start..end], &traj.state(start)).unwrap();
            let chunk_up = Upstream {
                d_outputs: up.d_outputs[start..end].to_vec(),
                d_final: if end == case.steps { up.d_final.clone() } else { None },
            };
            let gc = sequence::backward(cell, &chunk, &chunk_up, Truncation::Full).unwrap();
            params.axpy(1.0, &gc.params);
            // equal up to rounding: the engine's input projection and dX are one GEMM over all
            // T·B columns, whose kernel (and so its rounding) depends on the column count
            let close = |a: &DMatrix<f64>, b: &DMatrix<f64>, scale: f64| {
                approx::relative_eq!(*a, *b, epsilon = 1e-13 * scale, max_relative = 1e-12)
            };
            let dx_scale = g.dxs.iter().map(|m| m.amax()).fold(1.0, f64::max);
            let ds_scale = g.d_states.iter().map(|m| m.amax()).fold(1.0, f64::max);
            for (i, dx) in gc.dxs.iter().enumerate() {
                prop_assert!(close(dx, &g.dxs[start + i], dx_scale), "dx at step {}", start + i);
            }
            // inside a chunk (and at its end) the per-step gradients are the chunk's own
            for k in 1..=(end - start) {
                prop_assert!(close(&gc.d_states[k], &g.d_states[start + k], ds_scale), "d_state {}", start + k);
            }
            if start == 0 {
                prop_assert!(close(&gc.d_states[0], &g.d_states[0], ds_scale));
            }
        }
        for ((name, a), (_, b)) in params.iter().zip(g.params.iter()) {
            prop_assert!(approx::relative_eq!(*a, *b, epsilon = 1e-13 * a.amax().max(1.0), max_relative = 1e-12), "{}", name);
        }
        // a chunk at least as long as the sequence is full BPTT, bit for bit
        let long = sequence::backward(cell, &traj, &up, Truncation::Chunks(case.steps)).unwrap();
        let full = sequence::backward(cell, &traj, &up, Truncation::Full).unwrap();
        prop_assert_eq!(long.params, full.params);
        prop_assert_eq!(long.d_states, full.d_states);
    }
}
