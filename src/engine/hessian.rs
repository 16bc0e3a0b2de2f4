//! The loss metric `H` of a layer: identity, diagonal, or the dense second
//! moment `X^T X / n` of its inputs (plus damping).

use super::error::{EngineError, Result};

/// The matrix `H` (`n_in x n_in`) of `L = sum_r (w_r - ŵ_r)^T H (w_r - ŵ_r)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Hessian {
    /// `H = I` of the given size: plain weight MSE.
    Identity(usize),
    /// A diagonal `H`.
    Diagonal(Vec<f32>),
    /// A dense symmetric `H`, row-major `n x n`.
    Dense {
        /// Size.
        n: usize,
        /// Values.
        data: Vec<f32>,
    },
}

impl Hessian {
    /// Size `n_in`.
    pub fn n(&self) -> usize {
        match self {
            Hessian::Identity(n) => *n,
            Hessian::Diagonal(d) => d.len(),
            Hessian::Dense { n, .. } => *n,
        }
    }

    /// Diagonal entry `j`.
    pub fn diag(&self, j: usize) -> f32 {
        match self {
            Hessian::Identity(_) => 1.0,
            Hessian::Diagonal(d) => d[j],
            Hessian::Dense { n, data } => data[j * n + j],
        }
    }

    /// Build a dense `H` from calibration data `X^T X / n`, checking its shape
    /// and values, symmetrising it and adding `damping * mean(diag H) * I`.
    pub fn from_calibration(
        name: &str,
        n_in: usize,
        shape: &[usize],
        data: Vec<f32>,
        damping: f32,
    ) -> Result<Self> {
        let bad = |problem: String| EngineError::Calibration {
            name: name.to_string(),
            problem,
        };
        if shape != [n_in, n_in] {
            return Err(bad(format!("shape {shape:?}, expected [{n_in}, {n_in}]")));
        }
        if data.len() != n_in * n_in {
            return Err(bad(format!(
                "{} values, expected {}",
                data.len(),
                n_in * n_in
            )));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("non-finite value at element {i}")));
        }
        let mut data = data;
        let mut trace = 0f64;
        for j in 0..n_in {
            let v = data[j * n_in + j];
            if v < 0.0 {
                return Err(bad(format!(
                    "negative diagonal entry {v} at {j}: not a second-moment matrix"
                )));
            }
            trace += v as f64;
        }
        symmetrise(&mut data, n_in);
        let mean = (trace / n_in as f64) as f32;
        let add = if mean > 0.0 { damping * mean } else { 1.0 };
        for j in 0..n_in {
            data[j * n_in + j] += add;
        }
        Ok(Hessian::Dense { n: n_in, data })
    }

    /// The same metric on `n_p >= n` coordinates, the extra ones weighted 0
    /// (padding of a last partial sub-vector).
    pub(crate) fn padded(&self, n_p: usize) -> Metric {
        let n = self.n();
        match self {
            Hessian::Identity(_) => {
                let mut d = vec![1f32; n];
                d.resize(n_p, 0.0);
                Metric::Diagonal(d)
            }
            Hessian::Diagonal(d) => {
                let mut d = d.clone();
                d.resize(n_p, 0.0);
                Metric::Diagonal(d)
            }
            Hessian::Dense { data, .. } => {
                if n_p == n {
                    return Metric::Dense {
                        n: n_p,
                        data: data.clone(),
                    };
                }
                let mut p = vec![0f32; n_p * n_p];
                for i in 0..n {
                    p[i * n_p..i * n_p + n].copy_from_slice(&data[i * n..(i + 1) * n]);
                }
                Metric::Dense { n: n_p, data: p }
            }
        }
    }
}

/// The metric as the learner uses it, on padded coordinates.
#[derive(Debug, Clone)]
pub(crate) enum Metric {
    Diagonal(Vec<f32>),
    Dense { n: usize, data: Vec<f32> },
}

impl Metric {
    #[inline]
    pub(crate) fn at(&self, i: usize, j: usize) -> f32 {
        match self {
            Metric::Diagonal(d) => {
                if i == j {
                    d[i]
                } else {
                    0.0
                }
            }
            Metric::Dense { n, data } => data[i * n + j],
        }
    }
    pub(crate) fn diagonal(&self) -> Vec<f32> {
        match self {
            Metric::Diagonal(d) => d.clone(),
            Metric::Dense { n, data } => (0..*n).map(|j| data[j * n + j]).collect(),
        }
    }

    /// `out[r] = v[r] H` for each row `r` of `v` (`rows x n`), blocked so a
    /// row of `H` is reused across several rows of `v`. Summation order is
    /// fixed, so results are identical on every platform.
    pub(crate) fn rows_times(&self, v: &[f32], out: &mut [f32], n: usize) {
        match self {
            Metric::Diagonal(d) => {
                for (vr, or) in v.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                    for j in 0..n {
                        or[j] = vr[j] * d[j];
                    }
                }
            }
            Metric::Dense { data, .. } => {
                const BLOCK: usize = 8;
                for (vb, ob) in v.chunks(BLOCK * n).zip(out.chunks_mut(BLOCK * n)) {
                    ob.fill(0.0);
                    let rows = vb.len() / n;
                    for j in 0..n {
                        let hrow = &data[j * n..(j + 1) * n];
                        for r in 0..rows {
                            let x = vb[r * n + j];
                            if x != 0.0 {
                                axpy(&mut ob[r * n..(r + 1) * n], x, hrow);
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) use super::vector::axpy;

/// `A ← (A + Aᵀ) / 2` of a row-major `n x n` matrix.
pub(crate) fn symmetrise(a: &mut [f32], n: usize) {
    for i in 0..n {
        for j in i + 1..n {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
}
