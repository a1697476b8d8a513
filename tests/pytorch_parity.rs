//! Parity with PyTorch (float64): forward values and every gradient of reference cases computed
//! by `torch.nn.RNN` / `LSTM` / `GRU`, loaded through the public safetensors import path.
//!
//! Cases: every `*.safetensors` in `tests/fixtures/pytorch/` (copied from the project's shared
//! fixtures; see the README there), plus every file in the directory named by the environment
//! variable `BPTT_PYTORCH_FIXTURES`, if set — drop new cases there to check them. Each file says
//! in its metadata what module produced it. The loss of a case is
//! `L = Σ output ⊙ grad_output + Σ h_n ⊙ grad_h_n (+ Σ c_n ⊙ grad_c_n)`, so its gradients are
//! the vector–Jacobian products of the module with those upstream gradients.

use std::path::{Path, PathBuf};

use bptt::nn::activation::Activation;
use bptt::nn::arch::{Bidirectional, LayerGrads, SeqLayer, Stacked, Unidirectional};
use bptt::nn::cell::{Cell, CellFamily};
use bptt::nn::cells::gru::{Gru, GruVariant};
use bptt::nn::cells::lstm::Lstm;
use bptt::nn::cells::vanilla::VanillaRnn;
use bptt::nn::import::StateDict;
use bptt::nn::sequence::{self, Truncation, Upstream};
use nalgebra::DMatrix;

/// Agreement required: |ours − torch| ≤ 1e-12 · max(|ours|, |torch|), or, for entries far below
/// the tensor's scale (where summation order alone moves the last bits), ≤ 1e-12 · max|torch|.
const TOL: f64 = 1e-12;

fn fixtures() -> Vec<PathBuf> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")];
    if let Some(extra) = std::env::var_os("BPTT_PYTORCH_FIXTURES") {
        dirs.push(PathBuf::from(extra));
    }
    let mut files = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "safetensors") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Compare one tensor, collecting mismatches; returns the largest relative discrepancy.
fn compare(what: &str, ours: &DMatrix<f64>, torch: &DMatrix<f64>, errors: &mut Vec<String>) -> f64 {
    if ours.shape() != torch.shape() {
        errors.push(format!(
            "{what}: shape {:?} vs torch {:?}",
            ours.shape(),
            torch.shape()
        ));
        return f64::INFINITY;
    }
    let scale = torch.amax();
    let mut worst = 0.0f64;
    for (i, (a, b)) in ours.iter().zip(torch.iter()).enumerate() {
        let ok = approx::relative_eq!(*a, *b, epsilon = TOL * scale, max_relative = TOL);
        worst = worst.max((a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE));
        if !ok {
            errors.push(format!("{what}[{i}]: ours {a:e} vs torch {b:e}"));
        }
    }
    worst
}

/// Run `cell` (already loaded from `sd`) on the case and compare everything with PyTorch.
fn check_case<C: Cell<f64>>(cell: &C, sd: &StateDict, has_c: bool) -> Result<f64, Vec<String>> {
    let hidden = cell.hidden_size();
    let xs: Vec<DMatrix<f64>> = sd.sequence("input").map_err(|e| vec![e.to_string()])?;
    let load_state = |name: &str| -> Result<DMatrix<f64>, Vec<String>> {
        let h: DMatrix<f64> = sd.state(name, 0).map_err(|e| vec![e.to_string()])?;
        if !has_c {
            return Ok(h);
        }
        let c: DMatrix<f64> = sd
            .state(&name.replace('h', "c"), 0)
            .map_err(|e| vec![e.to_string()])?;
        let mut s = DMatrix::zeros(2 * hidden, h.ncols());
        s.rows_mut(0, hidden).copy_from(&h);
        s.rows_mut(hidden, hidden).copy_from(&c);
        Ok(s)
    };
    let s0 = load_state("h0")?;
    let traj = sequence::forward(cell, &xs, &s0).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let mut worst = 0.0f64;

    // forward: every output, and the final state(s)
    let outputs: Vec<DMatrix<f64>> = sd.sequence("output").map_err(|e| vec![e.to_string()])?;
    for (t, y) in outputs.iter().enumerate() {
        worst = worst.max(compare(
            &format!("output[{t}]"),
            &traj.output(t + 1, hidden),
            y,
            &mut errors,
        ));
    }
    let s_n = load_state("h_n")?;
    worst = worst.max(compare(
        "h_n (and c_n)",
        &traj.state(xs.len()),
        &s_n,
        &mut errors,
    ));

    // backward with PyTorch's upstream gradients
    let up = Upstream {
        d_outputs: sd
            .sequence("grad_output")
            .map_err(|e| vec![e.to_string()])?
            .into_iter()
            .map(Some)
            .collect(),
        d_final: Some(load_state("grad_h_n")?),
    };
    let g =
        sequence::backward(cell, &traj, &up, Truncation::Full).map_err(|e| vec![e.to_string()])?;
    for (i, (name, ours)) in g.params.iter().enumerate() {
        let torch: DMatrix<f64> = sd
            .matrix(&format!("grad.{name}_l0"), ours.nrows(), ours.ncols())
            .map_err(|e| vec![e.to_string()])?;
        worst = worst.max(compare(
            &format!("grad.{name}"),
            &g.params[i],
            &torch,
            &mut errors,
        ));
    }
    let dxs: Vec<DMatrix<f64>> = sd.sequence("grad.input").map_err(|e| vec![e.to_string()])?;
    for (t, dx) in dxs.iter().enumerate() {
        worst = worst.max(compare(
            &format!("grad.input[{t}]"),
            &g.dxs[t],
            dx,
            &mut errors,
        ));
    }
    worst = worst.max(compare(
        "grad.h0 (and grad.c0)",
        g.d_s0(),
        &load_state("grad.h0")?,
        &mut errors,
    ));
    if errors.is_empty() {
        Ok(worst)
    } else {
        Err(errors)
    }
}

/// `(layers·dirs)` states of `name` (and its `c` twin for the LSTM) as our state matrices.
fn states(
    sd: &StateDict,
    name: &str,
    count: usize,
    hidden: usize,
    has_c: bool,
) -> Result<Vec<DMatrix<f64>>, Vec<String>> {
    (0..count)
        .map(|i| {
            let h: DMatrix<f64> = sd.state(name, i).map_err(|e| vec![e.to_string()])?;
            if !has_c {
                return Ok(h);
            }
            let c: DMatrix<f64> = sd
                .state(&name.replace('h', "c"), i)
                .map_err(|e| vec![e.to_string()])?;
            let mut s = DMatrix::zeros(2 * hidden, h.ncols());
            s.rows_mut(0, hidden).copy_from(&h);
            s.rows_mut(hidden, hidden).copy_from(&c);
            Ok(s)
        })
        .collect()
}

/// Run a whole network (stacked, possibly bidirectional) on the case and compare everything.
fn check_network<N: SeqLayer<f64>>(
    net: &N,
    sd: &StateDict,
    has_c: bool,
) -> Result<f64, Vec<String>> {
    let hidden = net.state_block_rows();
    let count = net.state_sizes().len();
    let xs: Vec<DMatrix<f64>> = sd.sequence("input").map_err(|e| vec![e.to_string()])?;
    let s0 = states(sd, "h0", count, hidden, has_c)?;
    let (ys, finals, cache) = net.forward(&xs, &s0).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    let mut worst = 0.0f64;
    let outputs: Vec<DMatrix<f64>> = sd.sequence("output").map_err(|e| vec![e.to_string()])?;
    for (t, y) in outputs.iter().enumerate() {
        worst = worst.max(compare(&format!("output[{t}]"), &ys[t], y, &mut errors));
    }
    for (i, (ours, theirs)) in finals
        .iter()
        .zip(states(sd, "h_n", count, hidden, has_c)?)
        .enumerate()
    {
        worst = worst.max(compare(
            &format!("h_n[{i}] (and c_n)"),
            ours,
            &theirs,
            &mut errors,
        ));
    }
    let d_ys: Vec<DMatrix<f64>> = sd
        .sequence("grad_output")
        .map_err(|e| vec![e.to_string()])?;
    let d_finals = states(sd, "grad_h_n", count, hidden, has_c)?;
    let LayerGrads {
        params: grads,
        dxs,
        d_s0,
    } = net.backward(&cache, &d_ys, &d_finals);
    // the gradients carry PyTorch's parameter names: `grad.weight_ih_l0`, …
    for (name, g) in grads.iter() {
        let torch: DMatrix<f64> = sd
            .matrix(&format!("grad.{name}"), g.nrows(), g.ncols())
            .map_err(|e| vec![e.to_string()])?;
        worst = worst.max(compare(&format!("grad.{name}"), g, &torch, &mut errors));
    }
    let torch_dxs: Vec<DMatrix<f64>> =
        sd.sequence("grad.input").map_err(|e| vec![e.to_string()])?;
    for (t, dx) in torch_dxs.iter().enumerate() {
        worst = worst.max(compare(
            &format!("grad.input[{t}]"),
            &dxs[t],
            dx,
            &mut errors,
        ));
    }
    for (i, (ours, theirs)) in d_s0
        .iter()
        .zip(states(sd, "grad.h0", count, hidden, has_c)?)
        .enumerate()
    {
        worst = worst.max(compare(
            &format!("grad.h0[{i}] (and grad.c0)"),
            ours,
            &theirs,
            &mut errors,
        ));
    }
    if errors.is_empty() {
        Ok(worst)
    } else {
        Err(errors)
    }
}

/// Build the network a case describes from its state_dict and check it.
fn check_file<C: Cell<f64>>(
    sd: &StateDict,
    layers: usize,
    bidirectional: bool,
    has_c: bool,
    load: impl Fn(&StateDict, usize, bool) -> Result<C, bptt::error::BpttError> + Copy,
) -> Result<f64, Vec<String>> {
    let err = |e: bptt::error::BpttError| vec![e.to_string()];
    if bidirectional {
        let net: Stacked<Bidirectional<C>> =
            Stacked::from_state_dict_bidirectional(sd, layers, load).map_err(err)?;
        check_network(&net, sd, has_c)
    } else {
        let net: Stacked<Unidirectional<C>> =
            Stacked::from_state_dict(sd, layers, load).map_err(err)?;
        let worst = check_network(&net, sd, has_c)?;
        if layers == 1 {
            // single layers also through the cell-level BPTT the experiments use
            return Ok(worst.max(check_case(&load(sd, 0, false).map_err(err)?, sd, has_c)?));
        }
        Ok(worst)
    }
}

#[test]
fn forward_and_gradients_match_pytorch_float64() {
    let files = fixtures();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    let mut modules = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let sd = StateDict::load(path).unwrap_or_else(|e| panic!("{e}"));
        let meta = sd.metadata();
        let get = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
        let layers: usize = get("num_layers")
            .parse()
            .unwrap_or_else(|_| panic!("{name}: num_layers"));
        let bi = match get("bidirectional") {
            "true" => true,
            "false" => false,
            other => panic!("{name}: bidirectional = '{other}'"),
        };
        modules.push(get("module").to_string());
        let result = match (get("module"), get("nonlinearity")) {
            ("RNN", act) => {
                let act: Activation = act.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
                check_file(&sd, layers, bi, false, move |sd, l, r| {
                    VanillaRnn::from_state_dict(sd, l, r, act)
                })
            }
            ("LSTM", _) => check_file(&sd, layers, bi, true, |sd, l, r| {
                Lstm::from_state_dict(sd, l, r, ())
            }),
            ("GRU", _) => check_file(&sd, layers, bi, false, |sd, l, r| {
                Gru::from_state_dict(sd, l, r, GruVariant::ResetAfter)
            }),
            (other, _) => panic!("{name}: unknown module '{other}'"),
        };
        match result {
            Ok(worst) => checked.push(format!("{name}: max relative discrepancy {worst:.1e}")),
            Err(errs) => failures.push(format!("{name}:\n  {}", errs.join("\n  "))),
        }
    }
    println!("checked:\n  {}", checked.join("\n  "));
    assert!(
        failures.is_empty(),
        "PyTorch parity failures:\n{}",
        failures.join("\n")
    );
    // every file was checked (none skipped), and there was at least one of each kind
    assert_eq!(checked.len(), files.len());
    for module in ["RNN", "LSTM", "GRU"] {
        assert!(
            modules.iter().any(|m| m == module),
            "no {module} fixture was checked"
        );
    }
}
