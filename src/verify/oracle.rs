//! The exact forward-mode oracle: the *same* generic forward code run on dual numbers
//! (num-dual's `Dual64`, `a + b ε` with ε² = 0) gives exact Jacobian–vector products `J u` —
//! no step size, no truncation error. Every backward pass is checked by the adjoint identity
//!
//! ```text
//! ⟨v, J u⟩ = ⟨Jᵀ v, u⟩
//! ```
//!
//! for random `u` (over every parameter, input and initial state) and random `v` (over every
//! output and final state): the left side from the dual-number forward pass, the right side from
//! our backward pass. Both sides are sums of products computed in f64, so they agree to a few
//! ulps *of the sum of the absolute values of their terms*, `Λ = Σ|v ⊙ J u| + Σ|Jᵀ v ⊙ u|`; the
//! error is `|⟨v, J u⟩ − ⟨Jᵀ v, u⟩| / Λ` and the verdict is `error ≤ 1e-12·κ` (1e-12 ≈ 4500 ε
//! covers the accumulated rounding of T-step recurrences at the tested sizes), not a guessed
//! 1e-5. κ ≥ 1 is the one place where the backward pass is ill-conditioned by design: like
//! PyTorch, it computes σ' from the saved output (`1 − h²`), whose relative error is
//! `(1 + 2h²/(1 − h²))·ε` when a unit saturates; κ is the largest such factor over the
//! trajectory, and is 1 when nothing saturates.

use nalgebra::DMatrix;
use num_dual::Dual64;

use crate::error::BpttError;
use crate::nn::arch::{LayerGrads, RescalarLayer, SeqLayer};
use crate::nn::cell::Rescalar;
use crate::nn::params::Params;
use crate::nn::sequence::{self, Truncation, Upstream};
use crate::rng::{Rng, stream, uniform_matrix};

/// Tolerance of the adjoint identity, relative to `Λ`.
pub const ADJOINT_TOLERANCE: f64 = 1e-12;

/// The two sides of the adjoint identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdjointCheck {
    /// `⟨v, J u⟩`, from the dual-number forward pass.
    pub forward: f64,
    /// `⟨Jᵀ v, u⟩`, from the backward pass.
    pub backward: f64,
    /// `Λ`, the sum of the absolute values of both sides' terms.
    pub scale: f64,
    /// `|forward − backward| / Λ`.
    pub error: f64,
    /// κ ≥ 1: the rounding amplification of σ' computed from saturated outputs (see
    /// [`crate::nn::cell::Cell::conditioning`]); 1 when no unit saturates.
    pub conditioning: f64,
}

impl AdjointCheck {
    fn new(fwd_terms: impl Iterator<Item = f64>, bwd_terms: impl Iterator<Item = f64>) -> Self {
        let (mut forward, mut backward, mut scale) = (0.0, 0.0, 0.0);
        for t in fwd_terms {
            forward += t;
            scale += t.abs();
        }
        for t in bwd_terms {
            backward += t;
            scale += t.abs();
        }
        let error = if scale > 0.0 {
            (forward - backward).abs() / scale
        } else {
            0.0
        };
        AdjointCheck {
            forward,
            backward,
            scale,
            error,
            conditioning: 1.0,
        }
    }
    /// `error ≤ 1e-12 · κ` and everything finite.
    pub fn passed(&self) -> bool {
        self.error <= ADJOINT_TOLERANCE * self.conditioning
            && self.forward.is_finite()
            && self.backward.is_finite()
    }
}

/// `a + u ε` entry by entry.
pub fn dual(a: &DMatrix<f64>, u: &DMatrix<f64>) -> DMatrix<Dual64> {
    a.zip_map(u, Dual64::new)
}

fn eps_dot(v: &DMatrix<f64>, d: &DMatrix<Dual64>) -> impl Iterator<Item = f64> {
    v.iter()
        .zip(d.iter())
        .map(|(v, d)| v * d.eps)
        .collect::<Vec<_>>()
        .into_iter()
}

fn dot_terms<'a>(a: &'a DMatrix<f64>, b: &'a DMatrix<f64>) -> impl Iterator<Item = f64> + 'a {
    a.iter().zip(b.iter()).map(|(a, b)| a * b)
}

fn random_like(rng: &mut Rng, m: &DMatrix<f64>) -> DMatrix<f64> {
    uniform_matrix(rng, m.nrows(), m.ncols(), 1.0)
}

/// The adjoint identity for BPTT through a cell: J is the Jacobian of every output `h_1..h_T` and
/// of the final state with respect to every parameter, every `x_t` and `s_0`.
pub fn adjoint_sequence<C: Rescalar<f64>>(
    cell: &C,
    xs: &[DMatrix<f64>],
    s0: &DMatrix<f64>,
    seed: u64,
) -> Result<AdjointCheck, BpttError> {
    adjoint_sequence_masked(cell, xs, s0, seed, &|_, _| true)
}

/// [`adjoint_sequence`] with the direction u restricted to the entries where
/// `mask(variable, entry)` holds; variables are numbered parameters first, then `x_0..x_{T−1}`,
/// then `s_0`; entries are column-major indices.
pub fn adjoint_sequence_masked<C: Rescalar<f64>>(
    cell: &C,
    xs: &[DMatrix<f64>],
    s0: &DMatrix<f64>,
    seed: u64,
    mask: &dyn Fn(usize, usize) -> bool,
) -> Result<AdjointCheck, BpttError> {
    let mut rng = stream(seed, &[0xAD]);
    let mut var = 0;
    let mut masked = |rng: &mut Rng, m: &DMatrix<f64>| {
        let mut u = random_like(rng, m);
        for (e, x) in u.iter_mut().enumerate() {
            if !mask(var, e) {
                *x = 0.0;
            }
        }
        var += 1;
        u
    };
    let u_params: Vec<DMatrix<f64>> = cell
        .params()
        .iter()
        .map(|(_, m)| masked(&mut rng, m))
        .collect();
    let u_xs: Vec<DMatrix<f64>> = xs.iter().map(|x| masked(&mut rng, x)).collect();
    let u_s0 = masked(&mut rng, s0);
    // forward mode: θ + u_θ ε, x + u_x ε, s0 + u_s ε through the same generic forward
    let mut p = Params::new();
    for ((name, m), u) in cell.params().iter().zip(&u_params) {
        p.push(name, dual(m, u));
    }
    let dual_cell = cell.with_params(p);
    let dual_xs: Vec<_> = xs.iter().zip(&u_xs).map(|(x, u)| dual(x, u)).collect();
    let traj_d = sequence::forward(&dual_cell, &dual_xs, &dual(s0, &u_s0))?;
    // backward with random upstream v on every output and the final state
    let traj = sequence::forward(cell, xs, s0)?;
    let hidden = cell.hidden_size();
    let v_out: Vec<DMatrix<f64>> = (1..=xs.len())
        .map(|_| uniform_matrix(&mut rng, hidden, s0.ncols(), 1.0))
        .collect();
    let v_final = uniform_matrix(&mut rng, cell.state_size(), s0.ncols(), 1.0);
    let up = Upstream {
        d_outputs: v_out.iter().cloned().map(Some).collect(),
        d_final: Some(v_final.clone()),
    };
    let g = sequence::backward(cell, &traj, &up, Truncation::Full)?;
    let mut fwd: Vec<f64> = Vec::new();
    for (k, v) in v_out.iter().enumerate() {
        fwd.extend(eps_dot(v, &traj_d.output(k + 1, hidden)));
    }
    fwd.extend(eps_dot(&v_final, &traj_d.state(xs.len())));
    let mut bwd: Vec<f64> = Vec::new();
    for (i, u) in u_params.iter().enumerate() {
        bwd.extend(dot_terms(&g.params[i], u));
    }
    for (dx, u) in g.dxs.iter().zip(&u_xs) {
        bwd.extend(dot_terms(dx, u));
    }
    bwd.extend(dot_terms(g.d_s0(), &u_s0));
    let mut check = AdjointCheck::new(fwd.into_iter(), bwd.into_iter());
    check.conditioning = traj.conditioning(cell);
    Ok(check)
}

/// The adjoint identity for a whole network: J is the Jacobian of every output and final state
/// with respect to every parameter, every `x_t` and every initial state.
pub fn adjoint_network<N: RescalarLayer<f64>>(
    net: &N,
    xs: &[DMatrix<f64>],
    s0: &[DMatrix<f64>],
    seed: u64,
) -> Result<AdjointCheck, BpttError> {
    let mut rng = stream(seed, &[0xAE]);
    let params = net.params();
    let u_params: Vec<DMatrix<f64>> = params.tensors().map(|m| random_like(&mut rng, m)).collect();
    let u_xs: Vec<DMatrix<f64>> = xs.iter().map(|x| random_like(&mut rng, x)).collect();
    let u_s0: Vec<DMatrix<f64>> = s0.iter().map(|s| random_like(&mut rng, s)).collect();
    let mut dual_params = params.tensors().zip(&u_params).map(|(m, u)| dual(m, u));
    let dual_net = net.rebuild(&mut dual_params);
    let dual_xs: Vec<_> = xs.iter().zip(&u_xs).map(|(x, u)| dual(x, u)).collect();
    let dual_s0: Vec<_> = s0.iter().zip(&u_s0).map(|(s, u)| dual(s, u)).collect();
    let (ys_d, finals_d, _) = dual_net.forward(&dual_xs, &dual_s0)?;
    let (ys, finals, cache) = net.forward(xs, s0)?;
    let v_out: Vec<DMatrix<f64>> = ys.iter().map(|y| random_like(&mut rng, y)).collect();
    let v_fin: Vec<DMatrix<f64>> = finals.iter().map(|f| random_like(&mut rng, f)).collect();
    let LayerGrads {
        params: gp,
        dxs,
        d_s0,
    } = net.backward(&cache, &v_out, &v_fin);
    let mut fwd = Vec::new();
    for (v, d) in v_out.iter().zip(&ys_d).chain(v_fin.iter().zip(&finals_d)) {
        fwd.extend(eps_dot(v, d));
    }
    let mut bwd = Vec::new();
    for (g, u) in gp
        .iter()
        .map(|(_, g)| g)
        .zip(&u_params)
        .chain(dxs.iter().zip(&u_xs))
        .chain(d_s0.iter().zip(&u_s0))
    {
        bwd.extend(dot_terms(g, u));
    }
    let mut check = AdjointCheck::new(fwd.into_iter(), bwd.into_iter());
    check.conditioning = net.conditioning(&cache.workspace);
    Ok(check)
}

/// The full Jacobian of a cell's sequence map (outputs and final state, flattened) with respect to
/// every parameter, input and initial-state entry, column by column in forward mode (dual
/// numbers, u = unit vectors) and row by row in reverse mode (BPTT, v = unit vectors); returns
/// the largest entry-wise discrepancy relative to max(1, |J|max). For small sizes.
pub fn full_jacobian_discrepancy<C: Rescalar<f64>>(
    cell: &C,
    xs: &[DMatrix<f64>],
    s0: &DMatrix<f64>,
) -> Result<f64, BpttError> {
    let hidden = cell.hidden_size();
    let batch = s0.ncols();
    // the input variables, flattened: parameters, then x_t, then s0
    let mut inputs: Vec<DMatrix<f64>> = cell.params().iter().map(|(_, m)| m.clone()).collect();
    let n_params = inputs.len();
    inputs.extend(xs.iter().cloned());
    inputs.push(s0.clone());
    let sizes: Vec<usize> = inputs.iter().map(|m| m.len()).collect();
    let n_in: usize = sizes.iter().sum();
    let outputs_of = |traj: &sequence::Trajectory<Dual64, C::With<Dual64>>| -> Vec<f64> {
        let mut o: Vec<f64> = Vec::new();
        for k in 1..=xs.len() {
            o.extend(traj.output(k, hidden).iter().map(|d| d.eps));
        }
        o.extend(traj.state(xs.len()).iter().map(|d| d.eps));
        o
    };
    // forward mode: one column per input entry
    let mut jf: Vec<Vec<f64>> = Vec::with_capacity(n_in);
    for j in 0..n_in {
        let mut seen = 0;
        let duals: Vec<DMatrix<Dual64>> = inputs
            .iter()
            .map(|m| {
                let d = DMatrix::from_fn(m.nrows(), m.ncols(), |r, c| {
                    let idx = seen + r + c * m.nrows();
                    Dual64::new(m[(r, c)], if idx == j { 1.0 } else { 0.0 })
                });
                seen += m.len();
                d
            })
            .collect();
        let mut p = Params::new();
        for ((name, _), d) in cell.params().iter().zip(&duals[..n_params]) {
            p.push(name, d.clone());
        }
        let dc = cell.with_params(p);
        let traj = sequence::forward(
            &dc,
            &duals[n_params..n_params + xs.len()],
            &duals[n_params + xs.len()],
        )?;
        jf.push(outputs_of(&traj));
    }
    // reverse mode: one row per output entry
    let traj = sequence::forward(cell, xs, s0)?;
    let n_out = jf.first().map_or(0, |c| c.len());
    let mut worst = 0.0f64;
    let jmax = jf.iter().flatten().fold(1.0f64, |m, x| m.max(x.abs()));
    for i in 0..n_out {
        let mut up = Upstream::none(xs.len());
        let per_step = hidden * batch;
        let unit = |rows: usize| DMatrix::<f64>::zeros(rows, batch);
        if i < per_step * xs.len() {
            let mut d = unit(hidden);
            d[i % per_step] = 1.0;
            up.d_outputs[i / per_step] = Some(d);
        } else {
            let mut d = unit(cell.state_size());
            d[i - per_step * xs.len()] = 1.0;
            up.d_final = Some(d);
        }
        let g = sequence::backward(cell, &traj, &up, Truncation::Full)?;
        let mut row: Vec<f64> = Vec::with_capacity(n_in);
        for k in 0..n_params {
            row.extend(g.params[k].iter());
        }
        for dx in &g.dxs {
            row.extend(dx.iter());
        }
        row.extend(g.d_s0().iter());
        for (j, r) in row.iter().enumerate() {
            worst = worst.max((r - jf[j][i]).abs() / jmax);
        }
    }
    Ok(worst)
}

/// Fast mode's fallback: when a projected check fails on a big model, locate a faulty entry with
/// O(log n) further projections — first the variable (u supported on one variable at a time),
/// then the entry, by bisection of u's support. Returns `(variable, entry)` (numbered as in
/// [`adjoint_sequence_masked`]), or None if no projection fails.
pub fn locate_fault<C: Rescalar<f64>>(
    cell: &C,
    xs: &[DMatrix<f64>],
    s0: &DMatrix<f64>,
    seed: u64,
) -> Result<Option<(usize, usize)>, BpttError> {
    let sizes: Vec<usize> = cell
        .params()
        .iter()
        .map(|(_, m)| m.len())
        .chain(xs.iter().map(|x| x.len()))
        .chain(std::iter::once(s0.len()))
        .collect();
    let fails = |mask: &dyn Fn(usize, usize) -> bool| -> Result<bool, BpttError> {
        Ok(!adjoint_sequence_masked(cell, xs, s0, seed, mask)?.passed())
    };
    for (v, &n) in sizes.iter().enumerate() {
        if !fails(&|var, _| var == v)? {
            continue;
        }
        let (mut lo, mut hi) = (0, n);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fails(&|var, e| var == v && e >= lo && e < mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return Ok(Some((v, lo)));
    }
    Ok(None)
}

/// Precision: the relative error `‖g₃₂ − g₆₄‖ / ‖g₆₄‖` of the parameter gradients when the same
/// generic code runs in f32, against the f64 reference (never f32 finite differences), for BPTT
/// of a cell with random upstream gradients on the final state.
pub fn f32_error_sequence<C: Rescalar<f64>>(
    cell: &C,
    xs: &[DMatrix<f64>],
    s0: &DMatrix<f64>,
    seed: u64,
) -> Result<f64, BpttError> {
    let mut rng = stream(seed, &[0xF3]);
    let mut up = Upstream::none(xs.len());
    up.d_final = Some(random_like(&mut rng, s0));
    let g64 = sequence::backward(
        cell,
        &sequence::forward(cell, xs, s0)?,
        &up,
        Truncation::Full,
    )?;
    let cell32 = cell.with_params(cell.params().map(|x| x as f32));
    let xs32: Vec<DMatrix<f32>> = xs.iter().map(|x| x.map(|v| v as f32)).collect();
    let up32 = Upstream {
        d_outputs: vec![None; xs.len()],
        d_final: up.d_final.as_ref().map(|d| d.map(|v| v as f32)),
    };
    let g32 = sequence::backward(
        &cell32,
        &sequence::forward(&cell32, &xs32, &s0.map(|v| v as f32))?,
        &up32,
        Truncation::Full,
    )?;
    let mut diff = g32.params.map(f64::from);
    diff.axpy(-1.0, &g64.params);
    Ok(diff.norm() / g64.params.norm())
}

/// [`f32_error_sequence`] for a whole network, with random upstream gradients on every output.
pub fn f32_error_network<N: RescalarLayer<f64>>(
    net: &N,
    xs: &[DMatrix<f64>],
    s0: &[DMatrix<f64>],
    seed: u64,
) -> Result<f64, BpttError> {
    let mut rng = stream(seed, &[0xF4]);
    let (ys, finals, cache) = net.forward(xs, s0)?;
    let d_ys: Vec<DMatrix<f64>> = ys.iter().map(|y| random_like(&mut rng, y)).collect();
    let d_fin: Vec<DMatrix<f64>> = finals
        .iter()
        .map(|f| DMatrix::zeros(f.nrows(), f.ncols()))
        .collect();
    let g64 = net.backward(&cache, &d_ys, &d_fin).params;
    let params = net.params();
    let net32 = net.rebuild(&mut params.tensors().map(|m| m.map(|v| v as f32)));
    let to32 = |v: &[DMatrix<f64>]| v.iter().map(|m| m.map(|x| x as f32)).collect::<Vec<_>>();
    let (_, _, cache32) = net32.forward(&to32(xs), &to32(s0))?;
    let g32 = net32.backward(&cache32, &to32(&d_ys), &to32(&d_fin)).params;
    let (mut num, mut den) = (0.0, 0.0);
    for ((_, a), (_, b)) in g32.iter().zip(g64.iter()) {
        num += (a.map(f64::from) - b).norm_squared();
        den += b.norm_squared();
    }
    Ok((num / den).sqrt())
}
