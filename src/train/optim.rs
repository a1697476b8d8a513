//! First-order optimizers over [`Params`] groups (any number, e.g. a cell's and a readout's),
//! PyTorch's update rules:
//!
//! - SGD with optional momentum μ: `v ← μ v + g`, `θ ← θ − lr·v` (`torch.optim.SGD`,
//!   dampening 0, no Nesterov); μ = 0 is plain SGD `θ ← θ − lr·g`.
//! - Adam (Kingma & Ba 2015): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `θ ← θ − lr·m̂/(√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`.

use nalgebra::RealField;

use crate::error::BpttError;
use crate::nn::params::Params;

/// An optimizer and its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
}

impl Optimizer {
    /// Plain SGD.
    pub fn sgd(lr: f64) -> Self {
        Optimizer::Sgd { lr, momentum: 0.0 }
    }
    /// Adam with PyTorch's defaults β = (0.9, 0.999), ε = 1e-8.
    pub fn adam(lr: f64) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// An error naming the first hyper-parameter out of range (lr > 0; momentum, β₁, β₂ in
    /// [0, 1); ε > 0).
    pub fn validate(&self) -> Result<(), BpttError> {
        let bad =
            |what: &str, v: f64| Err(BpttError::Invalid(format!("{what} = {v} is out of range")));
        let (lr, rest): (f64, Vec<(&str, f64, bool)>) = match *self {
            Optimizer::Sgd { lr, momentum } => (
                lr,
                vec![("momentum", momentum, (0.0..1.0).contains(&momentum))],
            ),
            Optimizer::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => (
                lr,
                vec![
                    ("beta1", beta1, (0.0..1.0).contains(&beta1)),
                    ("beta2", beta2, (0.0..1.0).contains(&beta2)),
                    ("eps", eps, eps > 0.0 && eps.is_finite()),
                ],
            ),
        };
        if !(lr > 0.0 && lr.is_finite()) {
            return bad("the learning rate", lr);
        }
        for (what, v, ok) in rest {
            if !ok {
                return bad(what, v);
            }
        }
        Ok(())
    }
}

/// An optimizer with its state (velocity or moments) for a fixed set of parameter groups.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    optimizer: Optimizer,
    /// Momentum / Adam first moments, one per group.
    m: Vec<Params<f64>>,
    /// Adam second moments.
    v: Vec<Params<f64>>,
    /// Updates taken.
    t: u64,
}

impl OptimizerState {
    /// State for parameters shaped like `groups`; an error for out-of-range hyper-parameters.
    pub fn new(optimizer: Optimizer, groups: &[&Params<f64>]) -> Result<Self, BpttError> {
        optimizer.validate()?;
        let zeros: Vec<Params<f64>> = groups.iter().map(|p| p.zeros_like()).collect();
        let v = match optimizer {
            Optimizer::Adam { .. } => zeros.clone(),
            Optimizer::Sgd { .. } => Vec::new(),
        };
        Ok(OptimizerState {
            optimizer,
            m: zeros,
            v,
            t: 0,
        })
    }

    pub fn optimizer(&self) -> Optimizer {
        self.optimizer
    }

    /// Updates taken so far.
    pub fn updates(&self) -> u64 {
        self.t
    }

    /// One update of every parameter with its gradient (groups in the order of [`Self::new`]).
    pub fn step(&mut self, params: &mut [&mut Params<f64>], grads: &[&Params<f64>]) {
        assert_eq!(params.len(), self.m.len(), "parameter groups");
        assert_eq!(grads.len(), self.m.len(), "gradient groups");
        self.t += 1;
        let lr = self.optimizer.lr();
        for (k, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            for i in 0..p.len() {
                let v = self.v.get_mut(k).map(|v| v[i].as_mut_slice());
                self.optimizer.apply(
                    lr,
                    self.t,
                    p[i].as_mut_slice(),
                    g[i].as_slice(),
                    self.m[k][i].as_mut_slice(),
                    v,
                );
            }
        }
    }
}

impl Optimizer {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } => lr,
        }
    }

    /// The update rule on one tensor: `p` its entries, `g` its gradient, `m` the velocity (SGD)
    /// or first moment (Adam), `v` the second moment (Adam only), `lr` this update's learning
    /// rate (the base one, or a schedule's), `t` the number of this update (from 1). Any scalar.
    pub fn apply<T: RealField + Copy>(
        &self,
        lr: f64,
        t: u64,
        p: &mut [T],
        g: &[T],
        m: &mut [T],
        v: Option<&mut [T]>,
    ) {
        let c = |x: f64| -> T { nalgebra::convert(x) };
        match *self {
            Optimizer::Sgd { momentum, .. } => {
                let (lr, mu) = (c(lr), c(momentum));
                for j in 0..p.len() {
                    if momentum == 0.0 {
                        p[j] -= lr * g[j];
                    } else {
                        // v ← μ v + g ; θ ← θ − lr v
                        m[j] = mu * m[j] + g[j];
                        p[j] -= lr * m[j];
                    }
                }
            }
            Optimizer::Adam {
                beta1, beta2, eps, ..
            } => {
                let v = v.expect("Adam keeps a second moment");
                let ti = t as i32;
                let (c1, c2) = (c(1.0 - beta1.powi(ti)), c(1.0 - beta2.powi(ti)));
                let (b1, b2, one_b1, one_b2) = (c(beta1), c(beta2), c(1.0 - beta1), c(1.0 - beta2));
                let (lr, eps) = (c(lr), c(eps));
                for j in 0..p.len() {
                    m[j] = b1 * m[j] + one_b1 * g[j];
                    v[j] = b2 * v[j] + one_b2 * g[j] * g[j];
                    p[j] -= lr * (m[j] / c1) / ((v[j] / c2).sqrt() + eps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    fn one(v: &[f64]) -> Params<f64> {
        let mut p = Params::new();
        p.push("w", DMatrix::from_column_slice(v.len(), 1, v));
        p
    }

    #[test]
    fn sgd_steps_against_the_gradient() {
        let mut p = one(&[1.0, -2.0]);
        let g = one(&[0.5, 4.0]);
        let mut s = OptimizerState::new(Optimizer::sgd(0.1), &[&p]).unwrap();
        s.step(&mut [&mut p], &[&g]);
        assert_eq!(p[0].as_slice(), &[1.0 - 0.05, -2.0 - 0.4]);
    }

    #[test]
    fn momentum_on_a_constant_gradient_is_a_geometric_series() {
        // after n steps of g: θ = θ₀ − lr·g·Σ_{i=1..n} (1 − μ^i)/(1 − μ)
        let (lr, mu, n) = (0.1, 0.9, 7);
        let mut p = one(&[0.0]);
        let g = one(&[1.0]);
        let mut s = OptimizerState::new(Optimizer::Sgd { lr, momentum: mu }, &[&p]).unwrap();
        for _ in 0..n {
            s.step(&mut [&mut p], &[&g]);
        }
        let expected: f64 = -(1..=n)
            .map(|i| lr * (1.0 - mu.powi(i)) / (1.0 - mu))
            .sum::<f64>();
        approx::assert_relative_eq!(p[0][0], expected, epsilon = 1e-14, max_relative = 1e-13);
        assert_eq!(s.updates(), n as u64);
    }

    #[test]
    fn adam_first_step_has_size_lr_whatever_the_gradient_scale() {
        // m̂ = g, v̂ = g²: the first step is lr·g/(|g| + ε)
        let mut p = one(&[0.0, 0.0, 0.0]);
        let g = one(&[1e-3, -5.0, 1e4]);
        let mut s = OptimizerState::new(Optimizer::adam(0.01), &[&p]).unwrap();
        s.step(&mut [&mut p], &[&g]);
        for (x, gi) in p[0].iter().zip(g[0].iter()) {
            let expected = -0.01 * gi / (gi.abs() + 1e-8);
            approx::assert_relative_eq!(*x, expected, epsilon = 1e-15, max_relative = 1e-12);
        }
    }

    #[test]
    fn adam_minimises_an_ill_conditioned_quadratic() {
        // f = ½ Σ c_i θ_i², c spanning 6 decades
        let c = [1e-3, 1.0, 1e3];
        let mut p = one(&[1.0, 1.0, 1.0]);
        let mut s = OptimizerState::new(Optimizer::adam(0.05), &[&p]).unwrap();
        for _ in 0..3000 {
            let g = one(&[c[0] * p[0][0], c[1] * p[0][1], c[2] * p[0][2]]);
            s.step(&mut [&mut p], &[&g]);
        }
        assert!(p[0].amax() < 1e-2, "{}", p[0]);
    }

    #[test]
    fn out_of_range_hyper_parameters_are_refused() {
        let p = one(&[0.0]);
        for opt in [
            Optimizer::sgd(0.0),
            Optimizer::sgd(f64::NAN),
            Optimizer::Sgd {
                lr: 0.1,
                momentum: 1.0,
            },
            Optimizer::Adam {
                lr: 0.1,
                beta1: 0.9,
                beta2: 1.0,
                eps: 1e-8,
            },
        ] {
            let e = OptimizerState::new(opt, &[&p]).unwrap_err();
            assert!(e.to_string().contains("out of range"), "{e}");
        }
    }
}
