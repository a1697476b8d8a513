//! Every registered cell (`bptt::for_each_cell!`, the one cell list) with every generic
//! gradient property of the harness (`tests/harness/`): one test module per cell, named as the
//! registry names it (`rnn_tanh`, `lstm`, `mgu`, …).

mod harness;

use bptt::nn::cells::CellKind;

/// One `register_cell!` per registry line, the cell drawn through [`CellKind::uniform`].
macro_rules! register_every_cell {
    ($($([mod $file:ident])? $module:ident $kind:ident $name:literal $seed:literal $cell:ty, $config:expr;)*) => {
        $(register_cell!($module, |input, hidden, scale, rng: &mut bptt::rng::Rng| {
            CellKind::$kind.uniform::<f64>(input, hidden, scale, rng)
        });)*
    };
}

bptt::for_each_cell!(register_every_cell);
