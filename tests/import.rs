//! Import of PyTorch weights (`bptt::nn::import`, `CellFamily::from_state_dict`): a state dict
//! of another cell kind, layer or direction is a clear error naming what does not fit. The
//! imported values themselves are checked by `tests/pytorch_parity.rs`.

use std::path::Path;

use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::import::StateDict;

fn fixture(name: &str) -> StateDict {
    StateDict::load(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pytorch")
            .join(name),
    )
    .unwrap()
}

#[test]
fn importing_the_wrong_cell_kind_or_layer_is_a_clear_error() {
    let lstm = fixture("lstm_l1.safetensors");
    let e = Gru::<f64>::from_state_dict(&lstm, 0, false, GruVariant::ResetAfter)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not describe a GRU"), "{e}");
    let e = Lstm::<f64>::from_state_dict(&lstm, 1, false, ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor 'weight_hh_l1'"), "{e}");
    let e = Lstm::<f64>::from_state_dict(&lstm, 0, true, ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor 'weight_hh_l0_reverse'"), "{e}");
    let cell = Lstm::<f64>::from_state_dict(&lstm, 0, false, ()).unwrap();
    assert_eq!((cell.input_size(), cell.hidden_size()), (3, 4));
}
