//! Every cell, registered with the generic gradient-property harness (`tests/harness/`).

mod harness;

use bptt::nn::activation::Activation;
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::rng::Rng;

fn rnn(act: Activation) -> impl Fn(usize, usize, f64, &mut Rng) -> VanillaRnn<f64> + Copy {
    move |input, hidden, scale, rng| VanillaRnn::uniform(input, hidden, act, scale, rng)
}

register_cell!(rnn_tanh, rnn(Activation::Tanh));
register_cell!(rnn_sigmoid, rnn(Activation::Sigmoid));
register_cell!(rnn_relu, rnn(Activation::Relu), smooth = false);
register_cell!(rnn_linear, rnn(Activation::Identity));
register_cell!(lstm, |input, hidden, scale, rng: &mut bptt::rng::Rng| {
    Lstm::uniform(input, hidden, scale, rng)
});
register_cell!(gru, |input, hidden, scale, rng: &mut bptt::rng::Rng| {
    Gru::uniform(input, hidden, GruVariant::ResetAfter, scale, rng)
});
register_cell!(
    gru_reset_before,
    |input, hidden, scale, rng: &mut bptt::rng::Rng| {
        Gru::uniform(input, hidden, GruVariant::ResetBefore, scale, rng)
    }
);
