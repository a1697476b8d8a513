//! Import of PyTorch weights and reference cases from safetensors files.
//!
//! A PyTorch `state_dict` saved with `safetensors.torch.save_file` names its tensors
//! `weight_ih_l{k}[_reverse]`, `weight_hh_l{k}[_reverse]`, `bias_ih_l{k}[_reverse]`,
//! `bias_hh_l{k}[_reverse]`. Our cells use the same base names and shapes (biases as `n × 1`), so
//! a layer loads by appending the suffix [`suffix`]. F64 and F32 tensors are accepted.

use std::collections::BTreeMap;
use std::path::Path;

use nalgebra::{DMatrix, RealField};
use safetensors::{Dtype, SafeTensors};

use crate::error::BpttError;
use crate::nn::cell::Cell;

/// One tensor: shape and row-major data, widened to f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Every tensor of a safetensors file, and its `__metadata__`.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    tensors: BTreeMap<String, Tensor>,
    metadata: BTreeMap<String, String>,
}

/// The PyTorch name suffix of layer `layer`, direction `reverse`: `_l0`, `_l1_reverse`, …
pub fn suffix(layer: usize, reverse: bool) -> String {
    if reverse {
        format!("_l{layer}_reverse")
    } else {
        format!("_l{layer}")
    }
}

impl StateDict {
    /// Parse a safetensors buffer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BpttError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| BpttError::Invalid(format!("not a safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| BpttError::Invalid(format!("bad safetensors header: {e}")))?;
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            let bytes = view.data();
            let data: Vec<f64> = match view.dtype() {
                Dtype::F64 => bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                Dtype::F32 => bytes
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                    .collect(),
                other => {
                    return Err(BpttError::Invalid(format!(
                        "tensor '{name}' has dtype {other:?}; only F64 and F32 are supported"
                    )));
                }
            };
            tensors.insert(
                name.to_string(),
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Ok(StateDict { tensors, metadata })
    }

    /// Read and parse a safetensors file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, BpttError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| BpttError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        Self::from_bytes(&bytes).map_err(|e| BpttError::Invalid(format!("{}: {e}", path.display())))
    }

    /// The file's `__metadata__` (string to string).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor `name`, or an error listing what the file has.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, BpttError> {
        self.tensors.get(name).ok_or_else(|| {
            let have: Vec<&str> = self.names().collect();
            BpttError::Invalid(format!(
                "missing tensor '{name}' (the file has: {})",
                have.join(", ")
            ))
        })
    }

    /// Tensor `name` as a `rows × cols` matrix: a 2-D `[rows, cols]` tensor, or a 1-D `[rows]`
    /// tensor when `cols == 1` (a bias).
    pub fn matrix<T: RealField + Copy>(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<DMatrix<T>, BpttError> {
        let t = self.tensor(name)?;
        let ok = t.shape == [rows, cols] || (cols == 1 && t.shape == [rows]);
        if !ok {
            let expected = if cols == 1 {
                format!("[{rows}]")
            } else {
                format!("[{rows}, {cols}]")
            };
            return Err(BpttError::Invalid(format!(
                "tensor '{name}' has shape {:?}, expected {expected}",
                t.shape
            )));
        }
        Ok(DMatrix::from_row_slice(rows, cols, &t.data).map(nalgebra::convert))
    }

    /// A `(T, B, D)` sequence tensor (PyTorch's seq-first layout) as T matrices `D × B`.
    pub fn sequence<T: RealField + Copy>(&self, name: &str) -> Result<Vec<DMatrix<T>>, BpttError> {
        let t = self.tensor(name)?;
        let [steps, batch, dim] = t.shape[..] else {
            return Err(BpttError::Invalid(format!(
                "tensor '{name}' has shape {:?}, expected (T, B, D)",
                t.shape
            )));
        };
        Ok((0..steps)
            .map(|s| {
                let slab = &t.data[s * batch * dim..(s + 1) * batch * dim];
                DMatrix::from_column_slice(dim, batch, slab).map(nalgebra::convert)
            })
            .collect())
    }

    /// Entry `index` of a `(layers·directions, B, H)` state tensor (`h0`, `h_n`, …) as `H × B`.
    pub fn state<T: RealField + Copy>(
        &self,
        name: &str,
        index: usize,
    ) -> Result<DMatrix<T>, BpttError> {
        let t = self.tensor(name)?;
        let [count, batch, hidden] = t.shape[..] else {
            return Err(BpttError::Invalid(format!(
                "tensor '{name}' has shape {:?}, expected (layers·directions, B, H)",
                t.shape
            )));
        };
        if index >= count {
            return Err(BpttError::Invalid(format!(
                "tensor '{name}' has {count} states, asked for index {index}"
            )));
        }
        let slab = &t.data[index * batch * hidden..(index + 1) * batch * hidden];
        Ok(DMatrix::from_column_slice(hidden, batch, slab).map(nalgebra::convert))
    }

    /// `(D, H)` of the layer with name suffix `sfx`, from `weight_ih{sfx}` (`G·H × D`) and
    /// `weight_hh{sfx}` (`G·H × H`), checking that the cell kind has `gates` blocks.
    pub fn layer_sizes(
        &self,
        sfx: &str,
        gates: usize,
        kind: &str,
    ) -> Result<(usize, usize), BpttError> {
        let (wih, whh) = (format!("weight_ih{sfx}"), format!("weight_hh{sfx}"));
        let hh = self.tensor(&whh)?;
        let ih = self.tensor(&wih)?;
        let (&[gh, hidden], &[gh2, input]) = (&hh.shape[..], &ih.shape[..]) else {
            return Err(BpttError::Invalid(format!(
                "'{whh}' and '{wih}' must be 2-D, got {:?} and {:?}",
                hh.shape, ih.shape
            )));
        };
        if gh != gates * hidden || gh2 != gh {
            return Err(BpttError::Invalid(format!(
                "'{whh}' {:?} and '{wih}' {:?} do not describe a {kind} ({gates} gate block(s) of H rows each)",
                hh.shape, ih.shape
            )));
        }
        Ok((input, hidden))
    }

    /// Overwrite every parameter of `cell` with the tensor `{name}{sfx}` of this file
    /// (shapes must match the cell's).
    pub fn load_params<T: RealField + Copy, C: Cell<T>>(
        &self,
        cell: &mut C,
        sfx: &str,
    ) -> Result<(), BpttError> {
        let names: Vec<String> = cell.params().names().to_vec();
        for (i, name) in names.iter().enumerate() {
            let (rows, cols) = cell.params()[i].shape();
            cell.params_mut()[i] = self.matrix(&format!("{name}{sfx}"), rows, cols)?;
        }
        Ok(())
    }
}

/// Serialise named parameter groups as a safetensors file (F64, row-major as PyTorch stores
/// them; `H × 1` biases as 1-D `[H]` tensors): tensor `{prefix}{name}{suffix}` for every
/// `(prefix, params, suffix)` group, with `metadata` in the header. [`StateDict`] reads it back.
///
/// The bytes are a function of the arguments alone (header keys sorted, tensors laid out in
/// name order), so saved models are byte-identical across runs and thread counts — the
/// `safetensors` crate's own writer takes the metadata as a `HashMap` and is not.
pub fn to_safetensors(
    groups: &[(&str, &crate::nn::params::Params<f64>, &str)],
    metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>, BpttError> {
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (prefix, params, suffix) in groups {
        for (name, m) in params.iter() {
            let shape = if m.ncols() == 1 {
                vec![m.nrows()]
            } else {
                vec![m.nrows(), m.ncols()]
            };
            let bytes = m.transpose().iter().flat_map(|v| v.to_le_bytes()).collect();
            let key = format!("{prefix}{name}{suffix}");
            if tensors.insert(key.clone(), (shape, bytes)).is_some() {
                return Err(BpttError::Invalid(format!("tensor '{key}' named twice")));
            }
        }
    }
    // serde_json's map is ordered by key: a deterministic header
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(&metadata).unwrap(),
    );
    let mut offset = 0;
    for (name, (shape, bytes)) in &tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F64", "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    // the format pads the header with spaces to a multiple of 8 bytes
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    for (_, bytes) in tensors.values() {
        out.extend(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cell::CellFamily;

    #[test]
    fn exported_parameters_read_back_exactly() {
        let mut rng = crate::rng::stream(3, &[]);
        let cell = crate::nn::cells::vanilla::VanillaRnn::<f64>::pytorch_init(
            3,
            4,
            crate::nn::activation::Activation::Tanh,
            &mut rng,
        );
        let mut meta = BTreeMap::new();
        meta.insert("b".to_string(), "2".to_string());
        meta.insert("a".to_string(), "1".to_string());
        let bytes = to_safetensors(&[("", cell.params(), "_l0")], meta.clone()).unwrap();
        // deterministic: the same bytes every time
        assert_eq!(
            bytes,
            to_safetensors(&[("", cell.params(), "_l0")], meta).unwrap()
        );
        let sd = StateDict::from_bytes(&bytes).unwrap();
        assert_eq!(sd.metadata()["a"], "1");
        let back = crate::nn::cells::vanilla::VanillaRnn::from_state_dict(
            &sd,
            0,
            false,
            crate::nn::activation::Activation::Tanh,
        )
        .unwrap();
        assert_eq!(back, cell);
        assert_eq!(sd.tensor("bias_hh_l0").unwrap().shape, vec![4]);
    }

    use safetensors::tensor::TensorView;

    fn file(tensors: &[(&str, Vec<usize>, Vec<f64>)]) -> Vec<u8> {
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .iter()
            .map(|(n, s, d)| {
                (
                    n.to_string(),
                    d.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    s.clone(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, b, s)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F64, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn matrices_are_read_row_major_and_errors_name_the_tensor() {
        let bytes = file(&[
            ("weight_hh_l0", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            ("bias_hh_l0", vec![2], vec![5.0, 6.0]),
        ]);
        let sd = StateDict::from_bytes(&bytes).unwrap();
        let w: DMatrix<f64> = sd.matrix("weight_hh_l0", 2, 2).unwrap();
        assert_eq!(w, DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]));
        let b: DMatrix<f64> = sd.matrix("bias_hh_l0", 2, 1).unwrap();
        assert_eq!(b.as_slice(), &[5.0, 6.0]);
        let e = sd
            .matrix::<f64>("weight_ih_l0", 2, 2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing tensor 'weight_ih_l0'") && e.contains("bias_hh_l0"),
            "{e}"
        );
        let e = sd
            .matrix::<f64>("weight_hh_l0", 2, 3)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "tensor 'weight_hh_l0' has shape [2, 2], expected [2, 3]");
        assert!(StateDict::from_bytes(b"not a file").is_err());
        assert!(
            StateDict::load("/nonexistent/x.safetensors")
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/x.safetensors")
        );
    }

    #[test]
    fn layer_sizes_check_the_gate_count() {
        let bytes = file(&[
            ("weight_ih_l0", vec![8, 3], vec![0.0; 24]),
            ("weight_hh_l0", vec![8, 2], vec![0.0; 16]),
        ]);
        let sd = StateDict::from_bytes(&bytes).unwrap();
        assert_eq!(sd.layer_sizes("_l0", 4, "LSTM").unwrap(), (3, 2));
        let e = sd.layer_sizes("_l0", 3, "GRU").unwrap_err().to_string();
        assert!(e.contains("do not describe a GRU"), "{e}");
    }

    #[test]
    fn sequences_and_states_follow_pytorch_layout() {
        // (T=2, B=2, D=3): element [t][b][d] = 100 t + 10 b + d
        let data: Vec<f64> = (0..2)
            .flat_map(|t| {
                (0..2).flat_map(move |b| (0..3).map(move |d| (100 * t + 10 * b + d) as f64))
            })
            .collect();
        let sd = StateDict::from_bytes(&file(&[
            ("input", vec![2, 2, 3], data.clone()),
            ("h0", vec![2, 2, 3], data),
        ]))
        .unwrap();
        let xs: Vec<DMatrix<f64>> = sd.sequence("input").unwrap();
        assert_eq!(xs[1][(2, 1)], 112.0); // D × B: row d, column b
        let h: DMatrix<f64> = sd.state("h0", 1).unwrap();
        assert_eq!(h[(0, 1)], 110.0);
        assert!(sd.state::<f64>("h0", 2).is_err());
    }
}
