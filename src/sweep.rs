//! The spectral-radius sweep's computational core: for one random recurrent matrix rescaled to
//! a target spectral radius ρ, the per-step gradient norms `‖∂L/∂h_k‖`, k = 0..T, of
//! `L = Σ_b v·h_T^{(b)}` (v a fixed random unit vector), and the fitted decay rate.
//!
//! The vanilla cells run through an allocation-free kernel ([`VanillaKernel`]): the batch as
//! columns, the input projection of all T steps as one GEMM, then per step one GEMM into
//! preallocated buffers (faer's matmul on nalgebra's storage, no copies) and an element-wise
//! pass; backward one GEMM with a precomputed `W_hhᵀ` per step. It is checked against the
//! generic [`crate::sequence::backward`] in the tests. Gated cells use the generic path.

use std::fmt;
use std::str::FromStr;

use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::{DMatrix, DVector};

use crate::cells::gru::GruGate;
use crate::cells::lstm::LstmGate;
use crate::rng::{Rng, stream};
use crate::sequence::{self, Truncation, Upstream};
use crate::spectral::{EigenWorkspace, Ensemble, NoConvergence, gaussian, sigma_max};
use crate::{Activation, BpttError, Cell, Gru, GruVariant, Lstm, VanillaRnn};

/// The cells the sweep measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SweepCell {
    Rnn(Activation),
    Lstm,
    /// PyTorch's GRU (reset after).
    Gru,
}

impl SweepCell {
    pub const ALL: [SweepCell; 6] = [
        SweepCell::Rnn(Activation::Tanh),
        SweepCell::Rnn(Activation::Sigmoid),
        SweepCell::Rnn(Activation::Relu),
        SweepCell::Rnn(Activation::Identity),
        SweepCell::Lstm,
        SweepCell::Gru,
    ];

    /// Stable identifier used in seeds.
    pub fn id(self) -> u64 {
        match self {
            SweepCell::Rnn(a) => a as u64,
            SweepCell::Lstm => 10,
            SweepCell::Gru => 11,
        }
    }

    /// γ = sup|σ'| for the vanilla cells (Pascanu's bound); None for gated cells, for which
    /// the bound does not apply.
    pub fn gamma(self) -> Option<f64> {
        match self {
            SweepCell::Rnn(a) => Some(a.gamma()),
            _ => None,
        }
    }
}

impl fmt::Display for SweepCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SweepCell::Rnn(a) => write!(f, "rnn-{}", a.name()),
            SweepCell::Lstm => f.write_str("lstm"),
            SweepCell::Gru => f.write_str("gru"),
        }
    }
}

impl FromStr for SweepCell {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, BpttError> {
        match s {
            "lstm" => Ok(SweepCell::Lstm),
            "gru" => Ok(SweepCell::Gru),
            _ => match s.strip_prefix("rnn-").map(str::parse::<Activation>) {
                Some(Ok(a)) => Ok(SweepCell::Rnn(a)),
                _ => Err(BpttError::Invalid(format!(
                    "unknown cell '{s}' (expected rnn-tanh, rnn-sigmoid, rnn-relu, rnn-linear, lstm, gru)"
                ))),
            },
        }
    }
}

/// Sizes of one sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// n, hidden units.
    pub hidden: usize,
    /// m, input size.
    pub input: usize,
    /// T, steps.
    pub steps: usize,
    /// B, sequences per matrix.
    pub batch: usize,
}

/// Everything measured on one matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixResult {
    /// ρ(W_hh) after rescaling (= the target up to rounding; for gated cells, every rescaled block's).
    pub spectral_radius: f64,
    /// σ_max(W_hh) after rescaling (for gated cells: the largest over the rescaled blocks).
    pub sigma_max: f64,
    /// Matrices redrawn because the eigenvalue iteration did not converge.
    pub redraws: u32,
    /// Mean over the batch of `‖∂L/∂h_k^{(b)}‖₂`, k = 0..=T.
    pub grad_norm: Vec<f64>,
    /// Mean over the batch of `log10 ‖∂L/∂h_k^{(b)}‖₂`, k = 0..=T.
    pub log10_grad_norm: Vec<f64>,
    /// Least-squares slope of `ln‖∂L/∂h_k‖` (the batch mean of the logs) against `T − k`:
    /// the log growth per step back in time (negative: vanishing). NaN if any value is not
    /// finite or T = 0.
    pub decay_rate: f64,
    /// Whether any gradient norm is NaN or ∞, or exactly 0 so that its log is −∞ (an exploded
    /// network; a gradient that underflowed; a dead ReLU network).
    pub nonfinite: bool,
}

/// The fixed unit vector `v` of the loss `L = Σ_b v·h_T^{(b)}`, drawn once per seed.
pub fn loss_direction(seed: u64, hidden: usize) -> DVector<f64> {
    let v = gaussian(hidden, 1, 1.0, &mut stream(seed, &[u64::MAX]));
    let v = DVector::from_column_slice(v.as_slice());
    &v / v.norm()
}

/// Least-squares slope of `y_k` against `x_k = T − k`, k = 0..=T.
pub fn decay_rate(ln_norms: &[f64]) -> f64 {
    let t = ln_norms.len().saturating_sub(1);
    if t == 0 || ln_norms.iter().any(|y| !y.is_finite()) {
        return f64::NAN;
    }
    let x_mean = t as f64 / 2.0;
    let y_mean = ln_norms.iter().sum::<f64>() / ln_norms.len() as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (k, y) in ln_norms.iter().enumerate() {
        let x = (t - k) as f64 - x_mean;
        sxy += x * (y - y_mean);
        sxx += x * x;
    }
    sxy / sxx
}

/// Draw from `ensemble` until the eigenvalue iteration converges; returns the matrix, its
/// spectral radius and the number of redraws.
fn draw_with_radius(
    ensemble: Ensemble,
    n: usize,
    eig: &mut EigenWorkspace,
    rng: &mut Rng,
) -> (DMatrix<f64>, f64, u32) {
    let mut redraws = 0;
    loop {
        let w = ensemble.draw(n, rng);
        match eig.spectral_radius(&w) {
            Ok(r) if r > 0.0 && r.is_finite() => return (w, r, redraws),
            Ok(_) | Err(NoConvergence) => redraws += 1,
        }
        assert!(
            redraws < 1000,
            "1000 consecutive draws without a usable spectrum"
        );
    }
}

/// Everything a worker thread reuses from one matrix to the next.
pub struct Workspace {
    pub kernel: VanillaKernel,
    eig: EigenWorkspace,
}

impl Workspace {
    pub fn new(hidden: usize) -> Self {
        Workspace {
            kernel: VanillaKernel::default(),
            eig: EigenWorkspace::new(hidden),
        }
    }
}

/// Preallocated buffers of the vanilla kernel, reused across matrices (one per worker thread).
#[derive(Clone, Debug, Default)]
pub struct VanillaKernel {
    /// `W_hhᵀ`, n × n.
    w_t: DMatrix<f64>,
    /// Pre-activations of all steps, n × (B·T); block t is `a_{t+1}`.
    a: DMatrix<f64>,
    /// States `h_0..h_T`, n × (B·(T+1)).
    h: DMatrix<f64>,
    /// Running gradient and its scaled copy, n × B.
    g: DMatrix<f64>,
    da: DMatrix<f64>,
}

impl VanillaKernel {
    fn resize(&mut self, sizes: Sizes) {
        let Sizes {
            hidden: n,
            steps,
            batch,
            ..
        } = sizes;
        if self.a.shape() != (n, batch * steps) || self.h.shape() != (n, batch * (steps + 1)) {
            self.w_t = DMatrix::zeros(n, n);
            self.a = DMatrix::zeros(n, batch * steps);
            self.h = DMatrix::zeros(n, batch * (steps + 1));
            self.g = DMatrix::zeros(n, batch);
            self.da = DMatrix::zeros(n, batch);
        }
    }

    /// Per-step gradient norms of `L = Σ_b v·h_T` for the vanilla cell
    /// `h_t = σ(W_hh h_{t−1} + W_ih x_t)` (zero biases, `h_0 = 0`), with `xs` = `[x_0 … x_{T−1}]`
    /// as one m × (B·T) matrix. Returns `(mean ‖g_k‖, mean log10 ‖g_k‖)` for k = 0..=T.
    pub fn grad_norms(
        &mut self,
        act: Activation,
        w_hh: &DMatrix<f64>,
        w_ih: &DMatrix<f64>,
        xs: &DMatrix<f64>,
        v: &DVector<f64>,
        sizes: Sizes,
    ) -> (Vec<f64>, Vec<f64>) {
        self.resize(sizes);
        let Sizes {
            hidden: n,
            steps,
            batch,
            ..
        } = sizes;
        let block = n * batch;
        self.w_t.copy_from(&w_hh.transpose());
        // input projection of every step in one GEMM: a = W_ih [x_0 … x_{T−1}]
        faer::linalg::matmul::matmul(
            MatMut::from_column_major_slice_mut(self.a.as_mut_slice(), n, batch * steps),
            Accum::Replace,
            view(w_ih),
            view(xs),
            1.0,
            Par::Seq,
        );
        self.h.as_mut_slice()[..block].fill(0.0);
        let w = view(w_hh);
        for t in 0..steps {
            // a_{t+1} += W_hh h_t ; h_{t+1} = σ(a_{t+1})
            let (h_prev, h_next) =
                self.h.as_mut_slice()[t * block..(t + 2) * block].split_at_mut(block);
            let a_t = &mut self.a.as_mut_slice()[t * block..(t + 1) * block];
            faer::linalg::matmul::matmul(
                MatMut::from_column_major_slice_mut(a_t, n, batch),
                Accum::Add,
                w,
                MatRef::from_column_major_slice(h_prev, n, batch),
                1.0,
                Par::Seq,
            );
            activate(act, a_t, h_next);
        }
        // backward: g_T = v in every column; g_{k−1} = W_hhᵀ (g_k ⊙ σ'(a_k))
        let mut mean_norm = vec![0.0; steps + 1];
        let mut mean_log = vec![0.0; steps + 1];
        for col in self.g.column_iter_mut() {
            let mut col = col;
            col.copy_from(v);
        }
        let w_t = view(&self.w_t);
        for k in (0..=steps).rev() {
            let (norm, log) = column_norm_means(&self.g);
            mean_norm[k] = norm;
            mean_log[k] = log;
            if k == 0 {
                break;
            }
            let a_k = &self.a.as_slice()[(k - 1) * block..k * block];
            let h_k = &self.h.as_slice()[k * block..(k + 1) * block];
            backprop_activation(act, self.g.as_slice(), a_k, h_k, self.da.as_mut_slice());
            faer::linalg::matmul::matmul(
                MatMut::from_column_major_slice_mut(self.g.as_mut_slice(), n, batch),
                Accum::Replace,
                w_t,
                view(&self.da),
                1.0,
                Par::Seq,
            );
        }
        (mean_norm, mean_log)
    }
}

/// `h = σ(a)` element-wise, one loop per activation so that each vectorises.
pub(crate) fn activate(act: Activation, a: &[f64], h: &mut [f64]) {
    match act {
        Activation::Tanh => crate::fastmath::tanh_slice(a, h),
        Activation::Identity => h.copy_from_slice(a),
        Activation::Relu => h
            .iter_mut()
            .zip(a)
            .for_each(|(h, a)| *h = if *a > 0.0 { *a } else { 0.0 }),
        Activation::Sigmoid => crate::fastmath::sigmoid_slice(a, h),
    }
}

/// Backprop through σ: `da = g ⊙ σ'(a)`, with σ' from the saved `a` and `h`.
pub(crate) fn backprop_activation(
    act: Activation,
    g: &[f64],
    a: &[f64],
    h: &[f64],
    da: &mut [f64],
) {
    match act {
        Activation::Tanh => da
            .iter_mut()
            .zip(g.iter().zip(h))
            .for_each(|(d, (g, h))| *d = g * (1.0 - h * h)),
        Activation::Sigmoid => da
            .iter_mut()
            .zip(g.iter().zip(h))
            .for_each(|(d, (g, h))| *d = g * h * (1.0 - h)),
        Activation::Relu => da
            .iter_mut()
            .zip(g.iter().zip(a))
            .for_each(|(d, (g, a))| *d = if *a > 0.0 { *g } else { 0.0 }),
        Activation::Identity => da.copy_from_slice(g),
    }
}

/// A faer view of a nalgebra matrix (both column-major and contiguous: no copy).
pub(crate) fn view(m: &DMatrix<f64>) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(m.as_slice(), m.nrows(), m.ncols())
}

/// `(mean_b ‖g_b‖, mean_b log10 ‖g_b‖)` over the columns of `g`.
fn column_norm_means(g: &DMatrix<f64>) -> (f64, f64) {
    let (mut sum, mut sum_log) = (0.0, 0.0);
    for col in g.column_iter() {
        let norm = col.norm();
        sum += norm;
        sum_log += norm.log10();
    }
    let b = g.ncols() as f64;
    (sum / b, sum_log / b)
}

/// One matrix of the sweep: draw, rescale to `rho`, measure.
///
/// Randomness: everything comes from `stream(seed, [cell, ensemble, rho_index, matrix])`, in
/// this order: the recurrent matrix (and its redraws; for gated cells one per gate block),
/// `W_ih` ~ N(0, 1/m), the inputs `x_t` ~ N(0, 1), the Lanczos start vector. Biases are zero
/// and `h_0 = 0`.
#[allow(clippy::too_many_arguments)]
pub fn run_matrix(
    ws: &mut Workspace,
    cell: SweepCell,
    ensemble: Ensemble,
    rho: f64,
    rho_index: usize,
    matrix: usize,
    sizes: Sizes,
    seed: u64,
    v: &DVector<f64>,
) -> MatrixResult {
    let mut rng = stream(
        seed,
        &[cell.id(), ensemble.id(), rho_index as u64, matrix as u64],
    );
    let Sizes {
        hidden: n,
        input: m,
        steps,
        batch,
    } = sizes;
    let input_sd = 1.0 / (m as f64).sqrt();
    let gates = match cell {
        SweepCell::Rnn(_) => 1,
        SweepCell::Lstm => 4,
        SweepCell::Gru => 3,
    };
    // every recurrent block: drawn from the ensemble, rescaled to spectral radius ρ
    let mut redraws = 0;
    let mut w_hh = DMatrix::zeros(gates * n, n);
    let mut radius: f64 = 0.0;
    for gate in 0..gates {
        let (w, r, extra) = draw_with_radius(ensemble, n, &mut ws.eig, &mut rng);
        redraws += extra;
        let scale = rho / r;
        w_hh.rows_mut(gate * n, n).copy_from(&(w * scale));
        radius = radius.max(r * scale);
    }
    let w_ih = gaussian(gates * n, m, input_sd, &mut rng);
    let xs = gaussian(m, batch * steps, 1.0, &mut rng);
    let sigma = (0..gates)
        .map(|g| sigma_max(&w_hh.rows(g * n, n).into_owned(), &mut rng))
        .fold(0.0, f64::max);

    let (grad_norm, log10_grad_norm) = match cell {
        SweepCell::Rnn(act) => ws.kernel.grad_norms(act, &w_hh, &w_ih, &xs, v, sizes),
        SweepCell::Lstm => {
            let mut c = Lstm::<f64>::zeros(m, n);
            c.params_mut()[crate::cells::lstm::WEIGHT_HH].copy_from(&w_hh);
            c.params_mut()[crate::cells::lstm::WEIGHT_IH].copy_from(&w_ih);
            debug_assert_eq!(LstmGate::Output.rows(n).end, 4 * n);
            generic_grad_norms(&c, &xs, v, sizes)
        }
        SweepCell::Gru => {
            let mut c = Gru::<f64>::zeros(m, n, GruVariant::ResetAfter);
            c.params_mut()[crate::cells::gru::WEIGHT_HH].copy_from(&w_hh);
            c.params_mut()[crate::cells::gru::WEIGHT_IH].copy_from(&w_ih);
            debug_assert_eq!(GruGate::New.rows(n).end, 3 * n);
            generic_grad_norms(&c, &xs, v, sizes)
        }
    };
    let ln: Vec<f64> = log10_grad_norm
        .iter()
        .map(|l| l * std::f64::consts::LN_10)
        .collect();
    let nonfinite = grad_norm
        .iter()
        .chain(&log10_grad_norm)
        .any(|x| !x.is_finite());
    MatrixResult {
        spectral_radius: radius,
        sigma_max: sigma,
        redraws,
        decay_rate: decay_rate(&ln),
        grad_norm,
        log10_grad_norm,
        nonfinite,
    }
}

/// Per-step gradient norms through the generic cell code (any cell; used for the gated ones).
pub fn generic_grad_norms<C: Cell<f64>>(
    cell: &C,
    xs: &DMatrix<f64>,
    v: &DVector<f64>,
    sizes: Sizes,
) -> (Vec<f64>, Vec<f64>) {
    let Sizes {
        hidden: n,
        input: m,
        steps,
        batch,
    } = sizes;
    let xs: Vec<DMatrix<f64>> = (0..steps)
        .map(|t| xs.columns(t * batch, batch).into_owned())
        .collect();
    debug_assert!(xs.iter().all(|x| x.nrows() == m));
    let s0 = DMatrix::zeros(cell.state_size(), batch);
    let traj = sequence::forward(cell, &xs, &s0).expect("shapes set by the sweep");
    let mut d_final = DMatrix::zeros(cell.state_size(), batch);
    for mut col in d_final.rows_mut(0, n).column_iter_mut() {
        col.copy_from(v);
    }
    let up = Upstream {
        d_outputs: vec![None; steps],
        d_final: Some(d_final),
    };
    let g =
        sequence::backward(cell, &traj, &up, Truncation::Full).expect("shapes set by the sweep");
    g.d_states
        .iter()
        .map(|d| column_norm_means(&d.rows(0, n).into_owned()))
        .unzip()
}

/// A vanilla cell with the sweep's parameters, for checking the kernel against the generic path.
pub fn vanilla_cell(act: Activation, w_hh: &DMatrix<f64>, w_ih: &DMatrix<f64>) -> VanillaRnn<f64> {
    let mut c = VanillaRnn::zeros(w_ih.ncols(), w_hh.nrows(), act);
    c.params_mut()[crate::cells::vanilla::WEIGHT_HH].copy_from(w_hh);
    c.params_mut()[crate::cells::vanilla::WEIGHT_IH].copy_from(w_ih);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn kernel_agrees_with_the_generic_bptt() {
        let sizes = Sizes {
            hidden: 9,
            input: 4,
            steps: 13,
            batch: 3,
        };
        let v = loss_direction(3, 9);
        let mut kernel = VanillaKernel::default();
        for act in Activation::ALL {
            let mut rng = stream(4, &[act as u64]);
            let w_hh = Ensemble::Gaussian.draw(9, &mut rng) * 1.3;
            let w_ih = gaussian(9, 4, 0.5, &mut rng);
            let xs = gaussian(4, 3 * 13, 1.0, &mut rng);
            let fast = kernel.grad_norms(act, &w_hh, &w_ih, &xs, &v, sizes);
            let slow = generic_grad_norms(&vanilla_cell(act, &w_hh, &w_ih), &xs, &v, sizes);
            for k in 0..=13 {
                assert_relative_eq!(fast.0[k], slow.0[k], epsilon = 1e-300, max_relative = 1e-12);
                assert_relative_eq!(fast.1[k], slow.1[k], epsilon = 1e-13, max_relative = 1e-12);
            }
        }
    }

    #[test]
    fn decay_rate_is_the_least_squares_slope() {
        // ln‖g_k‖ = 0.3 − 0.2 (T − k) exactly: slope −0.2
        let ln: Vec<f64> = (0..=10).map(|k| 0.3 - 0.2 * (10 - k) as f64).collect();
        assert_relative_eq!(decay_rate(&ln), -0.2, epsilon = 1e-15, max_relative = 1e-13);
        assert!(decay_rate(&[1.0]).is_nan());
        assert!(decay_rate(&[1.0, f64::NEG_INFINITY]).is_nan());
    }

    #[test]
    fn cell_names_round_trip() {
        for c in SweepCell::ALL {
            assert_eq!(c.to_string().parse::<SweepCell>().unwrap(), c);
        }
        assert!("rnn-softplus".parse::<SweepCell>().is_err());
    }
}
