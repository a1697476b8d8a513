//! The spectral-radius sweep's computational core: for one random recurrent matrix rescaled to
//! a target spectral radius ρ, the per-step gradient norms `‖∂L/∂h_k‖`, k = 0..T, of
//! `L = Σ_b v·h_T^{(b)}` (v a fixed random unit vector), and the fitted decay rate.
//!
//! Every cell runs through the engine ([`crate::nn::engine`]) in its state-gradients-only mode
//! ([`Want::STATES_ONLY`]): the code the property tests check is the code that measures.
//!
//! Beside the measurement, two theories of the same decay rate, per matrix:
//! - the **mean-field** prediction ([`crate::numerics::meanfield`]) for the vanilla cells, at the
//!   matrix's own scale `g = ‖W_hh‖_F/√n` and input variance `‖W_ih‖_F²/n` (the inputs have unit
//!   variance): the predicted `ln‖∂L/∂h_k‖` over the same T steps from `h_0 = 0`, fitted like the
//!   measurement, and the asymptotic `½ ln χ(q*)`;
//! - the finite-time **Lyapunov spectrum** of the backward Jacobian product along the first
//!   sequence of the batch ([`Workspace::lyapunov`], every cell, through the engine).

use crate::nn::engine::{self, Inputs, MatRef, Tape, Upstream, Want};
use nalgebra::{DMatrix, DVector, DVectorView};

use crate::error::BpttError;
use crate::nn::cell::Cell;
use crate::nn::cell::{WEIGHT_HH, WEIGHT_IH};
use crate::nn::cells::{AnyCell, CellKind};
use crate::nn::sequence::Truncation;
use crate::numerics::hqr::NoConvergence;
use crate::numerics::lyapunov::Benettin;
use crate::numerics::meanfield::{self, GaussHermite};
use crate::numerics::spectral::{EigenWorkspace, Ensemble, gaussian, sigma_max};
use crate::rng::{Rng, stream};

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

/// What a sweep computes besides the measurement: the Lyapunov spectrum's size and QR interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Theory {
    /// How many of the largest Lyapunov exponents to compute (0: none; more than the state size
    /// S: all S).
    pub lyapunov_exponents: usize,
    /// Steps between QR re-orthonormalisations (≥ 1).
    pub qr_every: usize,
}

impl Theory {
    /// No Lyapunov spectrum (the mean-field prediction is always computed: it costs microseconds).
    pub const NONE: Theory = Theory {
        lyapunov_exponents: 0,
        qr_every: 1,
    };
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
    /// The matrix's scale `g = ‖W_hh‖_F / √(G·n)` (G gate blocks): the mean-field theory's g for
    /// entries of variance g²/n.
    pub weight_scale: f64,
    /// `‖W_ih‖_F² / (G·n)`: the variance of a unit's input drive `W_ih x_t` (unit-variance x).
    pub input_var: f64,
    /// The mean-field prediction of `decay_rate`: the same least-squares slope, of the predicted
    /// `ln‖∂L/∂h_k‖` over the same T steps (NaN for the gated cells).
    pub mean_field_slope: f64,
    /// The mean-field asymptotic rate `½ ln χ(q*)` (NaN for the gated cells).
    pub mean_field_asymptotic: f64,
    /// The mean-field fixed point q* of the pre-activation variance (NaN where none exists —
    /// linear with g ≥ 1, ReLU with g² ≥ 2 — and for the gated cells).
    pub mean_field_q: f64,
    /// The largest finite-time Lyapunov exponents of the backward state-Jacobian product of the
    /// batch's first sequence, largest first (empty unless [`Theory::lyapunov_exponents`] > 0).
    pub lyapunov: Vec<f64>,
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

/// Everything a worker thread reuses from one matrix to the next: the engine's tape, the
/// upstream gradient and the eigenvalue solver's workspace.
pub struct Workspace {
    tape: Tape<f64>,
    d_final: DMatrix<f64>,
    eig: EigenWorkspace,
    /// The cells measured, built once and refilled with each matrix's weights.
    cell: Option<AnyCell<f64>>,
    /// Gauss–Hermite rule of the mean-field expectations.
    quadrature: GaussHermite,
    /// The Lyapunov computation's buffers: one sequence's inputs and states, a segment's
    /// replicated inputs and start states.
    lyap_x: DMatrix<f64>,
    lyap_states: DMatrix<f64>,
    seg_x: DMatrix<f64>,
    seg_s0: DMatrix<f64>,
}

impl Workspace {
    pub fn new(hidden: usize) -> Self {
        Workspace {
            tape: Tape::default(),
            d_final: DMatrix::zeros(0, 0),
            eig: EigenWorkspace::new(hidden),
            cell: None,
            quadrature: GaussHermite::new(meanfield::DEFAULT_POINTS),
            lyap_x: DMatrix::zeros(0, 0),
            lyap_states: DMatrix::zeros(0, 0),
            seg_x: DMatrix::zeros(0, 0),
            seg_s0: DMatrix::zeros(0, 0),
        }
    }

    /// The finite-time Lyapunov exponents of the backward Jacobian product of sequence `column`
    /// of `xs` (m × B·T, as in [`grad_norms`](Self::grad_norms)) from `s_0 = 0`: the `exponents`
    /// largest λ_i of `J_1ᵀ ⋯ J_Tᵀ`, `J_t = ∂s_t/∂s_{t−1}` (the full state: an LSTM's `[h; c]`),
    /// largest first. `λ_1` is the asymptotic rate at which `‖∂L/∂s_k‖` grows with T − k for a
    /// generic loss; the rest tell how many directions of the state gradient survive.
    ///
    /// Benettin's QR method ([`Benettin`]) through the engine: the sequence's trajectory is run
    /// once; then, from the last step back, every `qr_every` steps a segment is re-run from its
    /// start state with the batch replaced by p copies of the sequence, its backward pass carries
    /// the orthonormal basis `Q` (S × p) as `∂L/∂s_end` to `J_{start+1}ᵀ ⋯ J_endᵀ Q`, and that is
    /// re-orthonormalised. The product of the factors is the state-gradient map the sweep's
    /// backward pass applies to `v`, computed by the same code.
    ///
    /// # Errors
    /// If `xs` does not fit the cell or `column ≥ batch`.
    pub fn lyapunov<C: Cell<f64>>(
        &mut self,
        cell: &C,
        xs: &DMatrix<f64>,
        batch: usize,
        column: usize,
        exponents: usize,
        qr_every: usize,
    ) -> Result<Vec<f64>, BpttError> {
        let (m, s_rows) = (cell.input_size(), cell.state_size());
        if batch == 0 || column >= batch || !xs.ncols().is_multiple_of(batch) || xs.nrows() != m {
            return Err(BpttError::Invalid(format!(
                "lyapunov: sequence {column} of a batch of {batch} in inputs of shape {:?} \
                 (the cell takes {m} inputs)",
                xs.shape()
            )));
        }
        if qr_every == 0 {
            return Err(BpttError::Invalid(
                "lyapunov: the QR interval must be at least 1 step".into(),
            ));
        }
        let steps = xs.ncols() / batch;
        let p = exponents.clamp(1, s_rows);
        // the sequence's own trajectory s_0 … s_T
        self.lyap_x.resize_mut(m, steps, 0.0);
        for t in 0..steps {
            self.lyap_x
                .column_mut(t)
                .copy_from(&xs.column(t * batch + column));
        }
        let s0 = DMatrix::zeros(s_rows, 1);
        engine::forward(
            cell,
            Inputs::Dense(MatRef::from(&self.lyap_x)),
            MatRef::from(&s0),
            &mut self.tape,
            None,
        )?;
        self.lyap_states = self.tape.states().to_owned();
        let mut qr = Benettin::new(s_rows, p);
        let mut end = steps;
        while end > 0 {
            let start = end.saturating_sub(qr_every);
            let len = end - start;
            // the segment start..end with p copies of the sequence (x_t repeated p times)
            self.seg_x.resize_mut(m, len * p, 0.0);
            for t in 0..len {
                for c in 0..p {
                    self.seg_x
                        .column_mut(t * p + c)
                        .copy_from(&self.lyap_x.column(start + t));
                }
            }
            self.seg_s0.resize_mut(s_rows, p, 0.0);
            for c in 0..p {
                self.seg_s0
                    .column_mut(c)
                    .copy_from(&self.lyap_states.column(start));
            }
            let x = Inputs::Dense(MatRef::from(&self.seg_x));
            engine::forward(cell, x, MatRef::from(&self.seg_s0), &mut self.tape, None)?;
            // backprop the basis: ∂(Qᵀ s_end)/∂s_start = J_{start+1}ᵀ ⋯ J_endᵀ Q
            let up = Upstream {
                d_final: Some(MatRef::from(qr.basis())),
                ..Upstream::default()
            };
            let no_grads = Want {
                params: false,
                inputs: false,
                states: false,
            };
            engine::backward(
                cell,
                x,
                &mut self.tape,
                &up,
                Truncation::Full,
                no_grads,
                None,
                None,
            )?;
            let propagated = self.tape.d_state(0).to_owned();
            qr.absorb(propagated, len);
            end = start;
        }
        Ok(qr.exponents())
    }

    /// Per-step gradient norms of `L = Σ_b v·h_T` through the engine (any cell; state
    /// gradients only, no parameter gradients), from `s_0 = 0`, with `xs` = `[x_0 … x_{T−1}]`
    /// as one m × (B·T) matrix. Returns `(mean_b ‖∂L/∂h_k‖, mean_b log10 ‖∂L/∂h_k‖)` for
    /// k = 0..=T (the hidden rows of the state gradient; an LSTM's cell rows are not counted).
    pub fn grad_norms<C: Cell<f64>>(
        &mut self,
        cell: &C,
        xs: &DMatrix<f64>,
        v: &DVector<f64>,
        batch: usize,
    ) -> Result<(Vec<f64>, Vec<f64>), BpttError> {
        let (n, s_rows) = (cell.hidden_size(), cell.state_size());
        if v.len() != n {
            return Err(BpttError::shape("loss direction v", (n, 1), (v.len(), 1)));
        }
        self.d_final.resize_mut(s_rows, batch, 0.0);
        self.d_final.fill(0.0);
        for mut col in self.d_final.rows_mut(0, n).column_iter_mut() {
            col.copy_from(v);
        }
        // the initial state is the zero block of d_final's cell rows' size: s_0 = 0
        let s0 = DMatrix::zeros(s_rows, batch);
        let x = Inputs::Dense(MatRef::from(xs));
        engine::forward(cell, x, MatRef::from(&s0), &mut self.tape, None)?;
        let up = Upstream {
            d_final: Some(MatRef::from(&self.d_final)),
            ..Upstream::default()
        };
        engine::backward(
            cell,
            x,
            &mut self.tape,
            &up,
            Truncation::Full,
            Want::STATES_ONLY,
            None,
            None,
        )?;
        let steps = self.tape.steps();
        Ok((0..=steps)
            .map(|k| column_norm_means(self.tape.d_state(k).row_block(0, n)))
            .unzip())
    }
}

/// `(mean_b ‖g_b‖, mean_b log10 ‖g_b‖)` over the columns of `g`.
fn column_norm_means(g: MatRef<'_, f64>) -> (f64, f64) {
    let (mut sum, mut sum_log) = (0.0, 0.0);
    for j in 0..g.cols() {
        // nalgebra's norm (its summation order), as the committed results were computed
        let norm = DVectorView::from_slice(g.col(j), g.rows()).norm();
        sum += norm;
        sum_log += norm.log10();
    }
    let b = g.cols() as f64;
    (sum / b, sum_log / b)
}

/// One matrix of the sweep: draw, rescale to `rho`, measure.
///
/// Randomness: everything comes from `stream(seed, [cell, ensemble, rho_index, matrix])`, in
/// this order: the recurrent matrix (and its redraws; for gated cells one per gate block),
/// `W_ih` ~ N(0, 1/m), the inputs `x_t` ~ N(0, 1), the Lanczos start vector. Biases are zero
/// and `h_0 = 0`. The theories ([`Theory`]) draw nothing: the measurement does not depend on
/// whether they are computed.
#[allow(clippy::too_many_arguments)]
pub fn run_matrix(
    ws: &mut Workspace,
    cell: CellKind,
    ensemble: Ensemble,
    rho: f64,
    rho_index: usize,
    matrix: usize,
    sizes: Sizes,
    seed: u64,
    v: &DVector<f64>,
    theory: Theory,
) -> MatrixResult {
    let mut rng = stream(
        seed,
        &[
            cell.seed_id(),
            ensemble.id(),
            rho_index as u64,
            matrix as u64,
        ],
    );
    let Sizes {
        hidden: n,
        input: m,
        steps,
        batch,
    } = sizes;
    let input_sd = 1.0 / (m as f64).sqrt();
    // the cell (kept in the workspace: no allocation per matrix), its weights set below
    let mut c = ws
        .cell
        .take()
        .filter(|c| c.kind() == cell && (c.input_size(), c.hidden_size()) == (m, n))
        .unwrap_or_else(|| cell.zeros(m, n));
    let gates = c.gate_rows() / n;
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

    c.params_mut()[WEIGHT_HH].copy_from(&w_hh);
    c.params_mut()[WEIGHT_IH].copy_from(&w_ih);
    let result = ws.grad_norms(&c, &xs, v, batch);
    let lyapunov = if theory.lyapunov_exponents > 0 {
        ws.lyapunov(
            &c,
            &xs,
            batch,
            0,
            theory.lyapunov_exponents,
            theory.qr_every,
        )
    } else {
        Ok(Vec::new())
    };
    let activation = c.elementwise_activation();
    ws.cell = Some(c);
    let (grad_norm, log10_grad_norm) = result.expect("shapes set by the sweep");
    let lyapunov = lyapunov.expect("shapes set by the sweep");
    // the mean-field theory at this matrix's scale and input variance
    let units = (gates * n) as f64;
    let g2 = w_hh.norm_squared() / units;
    let input_var = w_ih.norm_squared() / units;
    let (mean_field_slope, mean_field_asymptotic, mean_field_q) = match activation {
        Some(act) => {
            let gh = &ws.quadrature;
            let phi = |a: f64| act.value(a);
            let dphi = |a: f64| act.derivative(a, act.value(a));
            let predicted = meanfield::predicted_log_norms(gh, phi, dphi, g2, input_var, steps);
            (
                decay_rate(&predicted),
                meanfield::asymptotic_slope(gh, phi, dphi, g2, input_var),
                meanfield::fixed_point(gh, phi, g2, input_var).unwrap_or(f64::NAN),
            )
        }
        None => (f64::NAN, f64::NAN, f64::NAN),
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
        weight_scale: g2.sqrt(),
        input_var,
        mean_field_slope,
        mean_field_asymptotic,
        mean_field_q,
        lyapunov,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn decay_rate_is_the_least_squares_slope() {
        // ln‖g_k‖ = 0.3 − 0.2 (T − k) exactly: slope −0.2
        let ln: Vec<f64> = (0..=10).map(|k| 0.3 - 0.2 * (10 - k) as f64).collect();
        assert_relative_eq!(decay_rate(&ln), -0.2, epsilon = 1e-15, max_relative = 1e-13);
        assert!(decay_rate(&[1.0]).is_nan());
        assert!(decay_rate(&[1.0, f64::NEG_INFINITY]).is_nan());
    }
}
