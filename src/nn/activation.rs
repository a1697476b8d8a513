//! Element-wise activations σ of the vanilla cell, with their derivatives and γ = sup |σ'|.
//!
//! γ is the constant of Pascanu, Mikolov & Bengio (2013): the one-step Jacobian
//! `∂h_t/∂h_{t−1} = diag(σ'(a_t)) W_hh` has norm at most `γ · σ_max(W_hh)`.

use std::fmt;
use std::str::FromStr;

use nalgebra::RealField;

use crate::error::BpttError;

/// The non-linearity of a vanilla RNN cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Sigmoid,
    Relu,
    Identity,
}

impl Activation {
    /// Every activation, in a fixed order (for tables and test registries).
    pub const ALL: [Activation; 4] = [
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Relu,
        Activation::Identity,
    ];

    /// σ(a).
    pub fn value<T: RealField + Copy>(self, a: T) -> T {
        match self {
            Activation::Tanh => a.tanh(),
            Activation::Sigmoid => sigmoid(a),
            Activation::Relu => {
                if a > T::zero() {
                    a
                } else {
                    T::zero()
                }
            }
            Activation::Identity => a,
        }
    }

    /// σ'(a), given the pre-activation `a` and the output `h = σ(a)` (whichever is cheaper).
    ///
    /// ReLU's derivative at exactly 0 is taken as 0, as PyTorch does.
    pub fn derivative<T: RealField + Copy>(self, a: T, h: T) -> T {
        match self {
            Activation::Tanh => T::one() - h * h,
            Activation::Sigmoid => h * (T::one() - h),
            Activation::Relu => {
                if a > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::Identity => T::one(),
        }
    }

    /// γ = sup_a |σ'(a)|: 1 for tanh, 1/4 for sigmoid, 1 for ReLU and identity.
    pub fn gamma(self) -> f64 {
        match self {
            Activation::Sigmoid => 0.25,
            _ => 1.0,
        }
    }

    /// Whether σ has a kink (a point where it is not differentiable): ReLU at 0.
    pub fn has_kink(self) -> bool {
        matches!(self, Activation::Relu)
    }

    /// Lower-case name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Relu => "relu",
            Activation::Identity => "linear",
        }
    }
}

/// Logistic sigmoid 1/(1+e^{−a}), evaluated so that no intermediate overflows:
/// for a ≥ 0 as 1/(1+e^{−a}); for a < 0 as e^{a}/(1+e^{a}).
pub fn sigmoid<T: RealField + Copy>(a: T) -> T {
    if a >= T::zero() {
        T::one() / (T::one() + (-a).exp())
    } else {
        let e = a.exp();
        e / (T::one() + e)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = BpttError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tanh" => Ok(Activation::Tanh),
            "sigmoid" => Ok(Activation::Sigmoid),
            "relu" => Ok(Activation::Relu),
            "linear" | "identity" => Ok(Activation::Identity),
            other => Err(BpttError::Invalid(format!(
                "unknown activation '{other}' (expected one of: tanh, sigmoid, relu, linear)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn sigmoid_is_finite_and_exact_in_the_tails() {
        // The naive 1/(1+exp(-a)) gives exp(800) = inf -> 0 correctly but e^a/(1+e^a) gives NaN;
        // ours must be finite everywhere and match the closed form where both are exact.
        for &a in &[-800.0f64, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0] {
            let s = sigmoid(a);
            assert!(
                s.is_finite() && (0.0..=1.0).contains(&s),
                "sigmoid({a}) = {s}"
            );
        }
        assert_relative_eq!(
            sigmoid(-40.0f64),
            (-40.0f64).exp() / (1.0 + (-40.0f64).exp()),
            epsilon = 0.0,
            max_relative = 1e-15
        );
        assert_relative_eq!(sigmoid(0.0f64), 0.5, epsilon = 0.0, max_relative = 0.0);
        assert!(sigmoid(-800.0f64) >= 0.0);
    }

    #[test]
    fn derivatives_match_central_differences() {
        let h = 1e-6;
        for act in Activation::ALL {
            for &a in &[-3.0f64, -0.7, 0.3, 2.5] {
                let numeric = (act.value(a + h) - act.value(a - h)) / (2.0 * h);
                let analytic = act.derivative(a, act.value(a));
                assert_relative_eq!(analytic, numeric, epsilon = 1e-9, max_relative = 1e-8);
            }
        }
    }

    #[test]
    fn gamma_is_the_supremum_of_the_derivative() {
        for act in Activation::ALL {
            let sup = (-4000..=4000)
                .map(|i| i as f64 * 1e-3)
                .map(|a| act.derivative(a, act.value(a)).abs())
                .fold(0.0, f64::max);
            assert_relative_eq!(sup, act.gamma(), epsilon = 1e-12, max_relative = 1e-12);
        }
    }

    #[test]
    fn relu_derivative_at_the_kink_is_zero_as_in_pytorch() {
        // PyTorch's threshold_backward passes gradient only where a > 0
        assert_eq!(Activation::Relu.derivative(0.0f64, 0.0), 0.0);
        assert_eq!(Activation::Relu.derivative(-0.0f64, 0.0), 0.0);
        assert_eq!(
            Activation::Relu.derivative(f64::MIN_POSITIVE, f64::MIN_POSITIVE),
            1.0
        );
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>().unwrap(), act);
        }
        assert!("softplus".parse::<Activation>().is_err());
    }
}
