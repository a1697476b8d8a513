//! Criterion benchmarks of the spectral sweep's hot paths at the preset's sizes (n = 128,
//! m = 32, T = 100, B = 16): the vanilla forward/backward kernel, the eigenvalue solver (ours
//! and faer's complete one, per 16 matrices), σ_max, and one whole matrix. `cargo bench --bench sweep_kernel`.

use bptt::experiment::sweep::{Sizes, Theory, Workspace, loss_direction, run_matrix};
use bptt::nn::activation::Activation;
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::CellKind;
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::engine::{MatMut, MatRef, Op, gemm};
use bptt::numerics::spectral::{
    EigenWorkspace, Ensemble, gaussian, reference_eigenvalues, sigma_max,
};
use bptt::rng::stream;
use criterion::{Criterion, criterion_group, criterion_main};
use nalgebra::DMatrix;
use std::hint::black_box;

const SIZES: Sizes = Sizes {
    hidden: 128,
    input: 32,
    steps: 100,
    batch: 16,
};

fn bench(c: &mut Criterion) {
    let mut rng = stream(1, &[]);
    let w_hh = Ensemble::Gaussian.draw(128, &mut rng);
    let w_ih = gaussian(128, 32, 1.0 / 32f64.sqrt(), &mut rng);
    let xs = gaussian(32, 16 * 100, 1.0, &mut rng);
    let v = loss_direction(0, 128);
    let mut ws = Workspace::new(128);
    let mut cell = VanillaRnn::<f64>::zeros(32, 128, Activation::Tanh);
    cell.params_mut()[bptt::nn::cell::WEIGHT_HH].copy_from(&w_hh);
    cell.params_mut()[bptt::nn::cell::WEIGHT_IH].copy_from(&w_ih);
    c.bench_function("engine forward+backward tanh (128x128, T=100, B=16)", |b| {
        b.iter(|| {
            ws.grad_norms(black_box(&cell), &xs, &v, SIZES.batch)
                .unwrap()
        })
    });
    let lstm = Lstm::<f64>::uniform(32, 128, (), 1.0 / 128f64.sqrt(), &mut stream(3, &[]));
    c.bench_function("engine forward+backward lstm (128x128, T=100, B=16)", |b| {
        b.iter(|| {
            ws.grad_norms(black_box(&lstm), &xs, &v, SIZES.batch)
                .unwrap()
        })
    });
    let gru = Gru::<f64>::uniform(
        32,
        128,
        GruVariant::ResetAfter,
        1.0 / 128f64.sqrt(),
        &mut stream(4, &[]),
    );
    c.bench_function("engine forward+backward gru (128x128, T=100, B=16)", |b| {
        b.iter(|| {
            ws.grad_norms(black_box(&gru), &xs, &v, SIZES.batch)
                .unwrap()
        })
    });
    // the GEMM floor of those passes: the input projection (G·H × 32 × T·B), per step the
    // recurrent product forward (G·H × 128 × 16) and W_hhᵀ backward (128 × G·H × 16)
    for gates in [1usize, 3, 4] {
        let gh = gates * 128;
        let mut rng = stream(5, &[gates as u64]);
        let w = gaussian(gh, 128, 0.1, &mut rng);
        let w_t = w.transpose();
        let w_ih = gaussian(gh, 32, 0.1, &mut rng);
        let hs = gaussian(128, 16 * 100, 1.0, &mut rng);
        let ds = gaussian(gh, 16 * 100, 1.0, &mut rng);
        let mut p = DMatrix::<f64>::zeros(gh, 16 * 100);
        let mut dh = DMatrix::<f64>::zeros(128, 16);
        c.bench_function(
            &format!("GEMM floor of the pass, {gates} gate block(s)"),
            |b| {
                b.iter(|| {
                    gemm(
                        MatMut::from(&mut p),
                        false,
                        Op::N(MatRef::from(&w_ih)),
                        Op::N(MatRef::from(&xs)),
                    );
                    for t in 0..100 {
                        let h_t = MatRef::from(&hs).col_block(t * 16, 16);
                        let d_t = MatRef::from(&ds).col_block(t * 16, 16);
                        gemm(
                            MatMut::from(&mut p).col_block(t * 16, 16),
                            true,
                            Op::N(MatRef::from(&w)),
                            Op::N(h_t),
                        );
                        gemm(
                            MatMut::from(&mut dh),
                            false,
                            Op::N(MatRef::from(&w_t)),
                            Op::N(d_t),
                        );
                    }
                    black_box(&dh);
                })
            },
        );
    }
    // eigenvalue solvers over 16 matrices (iteration counts vary from matrix to matrix)
    let set: Vec<_> = (0..16)
        .map(|i| Ensemble::Gaussian.draw(128, &mut stream(4, &[i])))
        .collect();
    let mut eig = EigenWorkspace::new(128);
    c.bench_function("spectral radius x16 (Hessenberg + hqr, n=128)", |b| {
        b.iter(|| {
            for m in &set {
                black_box(eig.spectral_radius(black_box(m)).unwrap());
            }
        })
    });
    c.bench_function("eigenvalues x16 (faer evd_real, n=128)", |b| {
        b.iter(|| {
            for m in &set {
                black_box(reference_eigenvalues(black_box(m)).unwrap());
            }
        })
    });
    c.bench_function("sigma_max (Lanczos, n=128)", |b| {
        b.iter(|| sigma_max(black_box(&w_hh), &mut stream(2, &[])))
    });
    let mut ws = Workspace::new(128); // a fresh one, as each worker thread has
    let cell = CellKind::RnnTanh;
    c.bench_function("one matrix of the preset (draw, eig, sigma, kernel)", |b| {
        b.iter(|| {
            run_matrix(
                &mut ws,
                cell,
                Ensemble::Gaussian,
                1.0,
                10,
                black_box(3),
                SIZES,
                0,
                &v,
                Theory::NONE,
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
