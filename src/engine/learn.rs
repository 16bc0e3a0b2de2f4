//! Joint learning of codebooks and mappings (ALGORITHM.md §2-3).
//!
//! State: row groups, codebooks (f16-representable values), one index per
//! `d`-dim sub-vector, the error `E = Ŵ - W` and the gradient `G = 2 E H`.
//! Each sweep runs an exact least-squares codebook step (kept only if the
//! loss does not rise after rounding to f16), then proximal mapping passes
//! that move an index to a neighbouring codeword when the exact change
//! `ΔL = G·δ + δᵀ H δ` is negative, refreshing `G` for the moved weight.

use half::f16;
use serde::{Deserialize, Serialize};

use super::hessian::{axpy, Metric};
use super::kmeans::{nearest, weighted_kmeans, weighted_kmeans_1d};
use super::rng::{rng_for, sample_indices};
use super::vector::{add_assign, sub_assign};
use crate::format::packed::Mode;

/// Which codewords a mapping may move to in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MoveRule {
    /// JLCM: only neighbouring codewords (`k ± 1` for d = 1, the few nearest
    /// codewords for d > 1).
    Proximal,
    /// Ablation: any codeword (still with the exact ΔL).
    Unconstrained,
}

/// Kind of a recorded step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// After grouping and k-means initialisation.
    Init,
    /// After a codebook step.
    Codebook,
    /// After a mapping pass.
    Mapping,
}

/// One point of the loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// Sweep number (0 for the initialisation).
    pub sweep: u32,
    /// What the step was.
    pub kind: StepKind,
    /// `L` after the step.
    pub loss: f64,
}

/// Largest least-squares system solved exactly (`K * d` unknowns); larger
/// codebooks use a block-diagonal Newton step.
const MAX_EXACT_LS: usize = 256;
/// Sub-vectors sampled for the k-means initialisation of one codebook.
const MAX_KMEANS_POINTS: usize = 65_536;
/// Largest `S = Aᵀ H` cache (floats, all rows) kept through the learning;
/// above it every codebook step makes its own pass over `H`.
const MAX_STORED_S: usize = 64 << 20;
/// Neighbours tried by a proximal move when d > 1.
const VECTOR_NEIGHBOURS: usize = 4;
/// Mapping passes per sweep at most.
const MAX_MAPPING_PASSES: usize = 4;

/// The learner's state for one matrix.
pub(crate) struct Learner {
    pub n_out: usize,
    pub n_in: usize,
    pub n_p: usize,
    pub d: usize,
    pub n_sub: usize,
    pub k: usize,
    pub mode: Mode,
    pub n_groups: usize,
    pub w: Vec<f32>,
    /// `W H` (dense metric only; empty for a diagonal one).
    pub wh: Vec<f32>,
    pub metric: Metric,
    pub groups: Vec<u8>,
    pub cb: Vec<f32>,
    pub scales: Vec<f32>,
    pub idx: Vec<u8>,
    pub err: Vec<f32>,
    pub grad: Vec<f32>,
    pub loss: f64,
    /// Dense metric only: `S_r = A_rᵀ H` of every row `r` (`K*d x n_p`
    /// blocks; `S_r[(k, a), :]` = sum of the rows `H[s*d + a, :]` over the
    /// sub-vectors `s` of row `r` mapped to codeword `k`), built by the first
    /// codebook step and then kept up to date by every mapping move, so
    /// later codebook steps need no pass over `H`. Empty when not kept.
    s_rows: Vec<f32>,
    neighbours: Vec<u8>,
    n_neigh: usize,
}

fn round16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

impl Learner {
    /// Set up with padded weights (`w` itself when `n_in` is a multiple of
    /// `d`), grouping and the k-means initialisation.
    #[allow(clippy::too_many_arguments)]
    pub fn init(
        w: Vec<f32>,
        n_out: usize,
        n_in: usize,
        metric: Metric,
        d: usize,
        bits: u8,
        mode: Mode,
        groups: Vec<u8>,
        n_groups: usize,
        seed: u64,
        salt: &str,
    ) -> Self {
        let n_sub = n_in.div_ceil(d);
        let n_p = n_sub * d;
        let k = 1usize << bits;
        let wp = if n_p == n_in {
            w
        } else {
            let mut wp = vec![0f32; n_out * n_p];
            for r in 0..n_out {
                wp[r * n_p..r * n_p + n_in].copy_from_slice(&w[r * n_in..(r + 1) * n_in]);
            }
            wp
        };
        // `W H`: kept for a dense metric only; a diagonal one recomputes
        // `w * h` where needed (4 bytes per weight less).
        let wh = match &metric {
            Metric::Dense { .. } => {
                let mut wh = vec![0f32; n_out * n_p];
                metric.rows_times(&wp, &mut wh, n_p);
                wh
            }
            Metric::Diagonal(_) => vec![],
        };
        let hdiag = metric.diagonal();
        let n_cb = if mode == Mode::Codebook { n_groups } else { 1 };
        let mut me = Learner {
            n_out,
            n_in,
            n_p,
            d,
            n_sub,
            k,
            mode,
            n_groups,
            w: wp,
            wh,
            metric,
            groups,
            cb: vec![0f32; n_cb * k * d],
            scales: vec![1f32; n_groups],
            idx: vec![0u8; n_out * n_sub],
            err: vec![],
            grad: vec![],
            loss: 0.0,
            s_rows: vec![],
            neighbours: vec![],
            n_neigh: 0,
        };
        // Group scales (scale mode): RMS of the group's weights under diag H.
        if mode == Mode::Scale {
            let mut num = vec![0f64; n_groups];
            let mut den = vec![0f64; n_groups];
            for r in 0..n_out {
                let g = me.groups[r] as usize;
                for j in 0..n_p {
                    let x = me.w[r * n_p + j] as f64;
                    num[g] += hdiag[j] as f64 * x * x;
                    den[g] += hdiag[j] as f64;
                }
            }
            for g in 0..n_groups {
                let s = round16(libm::sqrt(num[g] / den[g].max(1e-30)) as f32);
                me.scales[g] = if s.is_finite() && s > 0.0 { s } else { 1.0 };
            }
        }
        // Weighted k-means per codebook on (scale-normalised) sub-vectors.
        for c in 0..n_cb {
            let rows: Vec<usize> = (0..n_out)
                .filter(|&r| mode == Mode::Scale || me.groups[r] as usize == c)
                .collect();
            let total = rows.len() * n_sub;
            let mut rng = rng_for(seed, salt, c as u64);
            let cap = if k * d <= 64 {
                MAX_KMEANS_POINTS
            } else {
                (MAX_KMEANS_POINTS / 4).max(16 * k)
            };
            let picks = sample_indices(&mut rng, total, cap.min(total));
            let mut pts = Vec::with_capacity(picks.len() * d);
            let mut wts = Vec::with_capacity(picks.len() * d);
            for p in picks {
                let r = rows[p / n_sub];
                let s = p % n_sub;
                let sc = me.scales[me.groups[r] as usize];
                for a in 0..d {
                    pts.push(me.w[r * n_p + s * d + a] / sc);
                    wts.push(hdiag[s * d + a] * sc * sc);
                }
            }
            let centroids = if d == 1 {
                weighted_kmeans_1d(&pts, &wts, k, 50, &mut rng)
            } else {
                weighted_kmeans(&pts, &wts, d, k, 30, &mut rng).centroids
            };
            let dst = &mut me.cb[c * k * d..(c + 1) * k * d];
            for (o, v) in dst.iter_mut().zip(&centroids) {
                *o = round16(*v);
            }
            if d == 1 {
                dst.sort_by(|a, b| a.total_cmp(b));
            }
        }
        // Initial mapping: nearest codeword under diag H.
        let mut x = vec![0f32; d];
        for r in 0..n_out {
            let g = me.groups[r] as usize;
            let c = me.cb_of(g);
            let sc = me.scales[g];
            let cbk = &me.cb[c * k * d..(c + 1) * k * d];
            for s in 0..n_sub {
                for a in 0..d {
                    x[a] = me.w[r * n_p + s * d + a] / sc;
                }
                let wts = &hdiag[s * d..(s + 1) * d];
                me.idx[r * n_sub + s] = if d == 1 {
                    nearest_sorted(cbk, x[0])
                } else {
                    nearest(&x, wts, cbk, d).0 as u8
                };
            }
        }
        let ev = me.evaluate(&me.cb, &me.scales, false, None);
        me.adopt(ev);
        if d == 1 && matches!(me.metric, Metric::Dense { .. }) {
            me.error_feedback_remap();
        }
        me.update_neighbours();
        me
    }

    /// Re-map every weight onto the current codebooks with GPTQ's
    /// error-compensating sweep (columns in decreasing `diag H` order, each
    /// rounded to the nearest codeword after the errors of the columns before
    /// it were folded into it), and keep the result if it lowers the loss.
    /// Nearest-codeword mapping ignores how errors of correlated inputs
    /// cancel; this starts the proximal search from a much better point.
    fn error_feedback_remap(&mut self) {
        let Metric::Dense { n, data } = &self.metric else {
            return;
        };
        if *n != self.n_in {
            return;
        }
        let h = super::hessian::Hessian::Dense {
            n: *n,
            data: data.clone(),
        };
        let (n_in, k) = (self.n_in, self.k);
        let w: Vec<f32> = (0..self.n_out)
            .flat_map(|r| self.w[r * self.n_p..r * self.n_p + n_in].iter().copied())
            .collect();
        let books = |r: usize| -> Vec<f32> {
            let g = self.groups[r] as usize;
            let c = self.cb_of(g);
            let s = self.scales[g];
            let mut cb: Vec<f32> = self.cb[c * k..(c + 1) * k].iter().map(|v| s * v).collect();
            cb.sort_by(|a, b| a.total_cmp(b));
            cb
        };
        let deq = super::baselines::gptq::gptq_codebook_mapping(
            &w, self.n_out, n_in, &h, true, 0.0, &books,
        );
        let old_idx = self.idx.clone();
        for r in 0..self.n_out {
            let g = self.groups[r] as usize;
            let c = self.cb_of(g);
            let s = self.scales[g];
            let cb = &self.cb[c * k..(c + 1) * k];
            for j in 0..n_in {
                let v = deq[r * n_in + j];
                let mut best = (f32::INFINITY, 0u8);
                for (kk, cv) in cb.iter().enumerate() {
                    let e = (s * cv - v).abs();
                    if e < best.0 {
                        best = (e, kk as u8);
                    }
                }
                self.idx[r * self.n_sub + j] = best.1;
            }
        }
        let ev = self.evaluate(&self.cb, &self.scales, false, None);
        if ev.loss < self.loss {
            self.adopt(ev);
        } else {
            self.idx = old_idx;
        }
    }

    #[inline]
    fn cb_of(&self, g: usize) -> usize {
        if self.mode == Mode::Codebook {
            g
        } else {
            0
        }
    }

    /// Make an evaluation of the current codebooks and mapping the state:
    /// its loss and scales, and its error and gradient (recomputed in place
    /// for a diagonal metric). `self.cb` must hold the evaluated codebooks.
    fn adopt(&mut self, ev: Evaluation) {
        self.loss = ev.loss;
        self.scales = ev.scales;
        match ev.err_grad {
            Some((err, grad)) => {
                self.err = err;
                self.grad = grad;
            }
            None => self.fill_err_grad_diagonal(),
        }
    }

    /// `E = s Ŵ - W` and `G = 2 (s Ŵ h - W h)` for a diagonal metric `h`,
    /// written into the state's buffers (the same arithmetic as
    /// [`Self::evaluate`]'s dense path, so the same bits).
    fn fill_err_grad_diagonal(&mut self) {
        let Metric::Diagonal(h) = &self.metric else {
            return;
        };
        let (n_p, d, k, n_sub) = (self.n_p, self.d, self.k, self.n_sub);
        self.err.resize(self.n_out * n_p, 0.0);
        self.grad.resize(self.n_out * n_p, 0.0);
        for r in 0..self.n_out {
            let g = self.groups[r] as usize;
            let c = self.cb_of(g);
            let sc = self.scales[g];
            let cbk = &self.cb[c * k * d..(c + 1) * k * d];
            let ids = &self.idx[r * n_sub..(r + 1) * n_sub];
            let wr = &self.w[r * n_p..(r + 1) * n_p];
            let er = &mut self.err[r * n_p..(r + 1) * n_p];
            let gr = &mut self.grad[r * n_p..(r + 1) * n_p];
            for (s, &kk) in ids.iter().enumerate() {
                for a in 0..d {
                    let j = s * d + a;
                    let v = cbk[kk as usize * d + a];
                    er[j] = sc * v - wr[j];
                    gr[j] = 2.0 * (sc * (v * h[j]) - wr[j] * h[j]);
                }
            }
        }
    }

    /// Loss (and refitted scales) of a diagonal metric without materialising
    /// `Ŵ`, `E` or `G`: the arithmetic of the dense path, element by element.
    fn evaluate_diagonal(
        &self,
        h: &[f32],
        cb: &[f32],
        scales: &[f32],
        fit_scales: bool,
    ) -> Evaluation {
        let (n_p, d, k, n_sub) = (self.n_p, self.d, self.k, self.n_sub);
        let code = |r: usize, j: usize| -> f32 {
            let c = self.cb_of(self.groups[r] as usize);
            cb[c * k * d + self.idx[r * n_sub + j / d] as usize * d + j % d]
        };
        let mut scales = scales.to_vec();
        if fit_scales && self.mode == Mode::Scale {
            let mut num = vec![0f64; self.n_groups];
            let mut den = vec![0f64; self.n_groups];
            for r in 0..self.n_out {
                let g = self.groups[r] as usize;
                let wr = &self.w[r * n_p..(r + 1) * n_p];
                num[g] += (0..n_p)
                    .map(|j| (code(r, j) * h[j]) as f64 * wr[j] as f64)
                    .sum::<f64>();
                den[g] += (0..n_p)
                    .map(|j| {
                        let v = code(r, j);
                        (v * h[j]) as f64 * v as f64
                    })
                    .sum::<f64>();
            }
            refit_scales(&mut scales, &num, &den);
        }
        let mut loss = 0f64;
        for r in 0..self.n_out {
            let g = self.groups[r] as usize;
            let sc = scales[g];
            let cbk = &cb[self.cb_of(g) * k * d..(self.cb_of(g) + 1) * k * d];
            let ids = &self.idx[r * n_sub..(r + 1) * n_sub];
            let wr = &self.w[r * n_p..(r + 1) * n_p];
            let mut lr = 0f64;
            for (s, &kk) in ids.iter().enumerate() {
                for a in 0..d {
                    let j = s * d + a;
                    let v = cbk[kk as usize * d + a];
                    let e = sc * v - wr[j];
                    let gj = 2.0 * (sc * (v * h[j]) - wr[j] * h[j]);
                    lr += e as f64 * gj as f64;
                }
            }
            loss += 0.5 * lr;
        }
        Evaluation {
            loss: loss.max(0.0),
            scales,
            err_grad: None,
        }
    }

    /// Loss for codebooks `cb` and scales `scales` with the current mapping;
    /// with `fit_scales`, the scales are first refitted by least squares
    /// (scale mode). A dense metric also returns the error and gradient it
    /// computed on the way; `stored` is [`Self::s_rows`] when kept.
    fn evaluate(
        &self,
        cb: &[f32],
        scales: &[f32],
        fit_scales: bool,
        stored: Option<&[f32]>,
    ) -> Evaluation {
        if let Metric::Diagonal(h) = &self.metric {
            return self.evaluate_diagonal(h, cb, scales, fit_scales);
        }
        let (n_p, d, k, n_sub) = (self.n_p, self.d, self.k, self.n_sub);
        let mut v = vec![0f32; self.n_out * n_p];
        for r in 0..self.n_out {
            let c = self.cb_of(self.groups[r] as usize);
            let cbk = &cb[c * k * d..(c + 1) * k * d];
            let row = &mut v[r * n_p..(r + 1) * n_p];
            for s in 0..n_sub {
                let kk = self.idx[r * n_sub + s] as usize;
                row[s * d..(s + 1) * d].copy_from_slice(&cbk[kk * d..(kk + 1) * d]);
            }
        }
        let mut u = vec![0f32; self.n_out * n_p];
        match stored {
            // U_r = V_r H = sum_p c[p] S_r[p, :], with S_r kept from the
            // least-squares pass: no second pass over H.
            Some(srows) => {
                let kd = k * d;
                for r in 0..self.n_out {
                    let c = self.cb_of(self.groups[r] as usize);
                    let cbk = &cb[c * kd..(c + 1) * kd];
                    let ur = &mut u[r * n_p..(r + 1) * n_p];
                    for (p, &cv) in cbk.iter().enumerate() {
                        if cv != 0.0 {
                            axpy(ur, cv, &srows[(r * kd + p) * n_p..(r * kd + p + 1) * n_p]);
                        }
                    }
                }
            }
            None => self.metric.rows_times(&v, &mut u, n_p),
        }
        let mut scales = scales.to_vec();
        if fit_scales && self.mode == Mode::Scale {
            let mut num = vec![0f64; self.n_groups];
            let mut den = vec![0f64; self.n_groups];
            for r in 0..self.n_out {
                let g = self.groups[r] as usize;
                let (ur, vr, wr) = (
                    &u[r * n_p..(r + 1) * n_p],
                    &v[r * n_p..(r + 1) * n_p],
                    &self.w[r * n_p..(r + 1) * n_p],
                );
                num[g] += dot64(ur, wr);
                den[g] += dot64(ur, vr);
            }
            refit_scales(&mut scales, &num, &den);
        }
        let mut loss = 0f64;
        for r in 0..self.n_out {
            let sc = scales[self.groups[r] as usize];
            let base = r * n_p;
            let mut lr = 0f64;
            for j in 0..n_p {
                let e = sc * v[base + j] - self.w[base + j];
                let gj = 2.0 * (sc * u[base + j] - self.wh[base + j]);
                v[base + j] = e;
                u[base + j] = gj;
                lr += e as f64 * gj as f64;
            }
            loss += 0.5 * lr;
        }
        Evaluation {
            loss: loss.max(0.0),
            scales,
            err_grad: Some((v, u)),
        }
    }

    /// Exact least-squares codebook step (and scale refit). Returns whether
    /// it was kept (the loss did not rise).
    pub fn codebook_step(&mut self) -> bool {
        let n_cb = self.cb.len() / (self.k * self.d);
        let mut new_cb = self.cb.clone();
        let kd_all = self.k * self.d;
        let store_len = self.n_out * kd_all * self.n_p;
        if let Metric::Dense { data, .. } = &self.metric {
            if self.s_rows.is_empty() && kd_all <= MAX_EXACT_LS && store_len <= MAX_STORED_S {
                self.s_rows = self.build_s_rows(data);
            }
        }
        for c in 0..n_cb {
            let rows: Vec<usize> = (0..self.n_out)
                .filter(|&r| self.cb_of(self.groups[r] as usize) == c)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let kd = self.k * self.d;
            let old = &self.cb[c * kd..(c + 1) * kd];
            let solved = if kd <= MAX_EXACT_LS {
                self.solve_exact(&rows, old)
            } else {
                self.solve_block_newton(&rows, old)
            };
            if let Some(sol) = solved {
                for (o, v) in new_cb[c * kd..(c + 1) * kd].iter_mut().zip(sol) {
                    let x = round16(v as f32);
                    if x.is_finite() {
                        *o = x;
                    }
                }
            }
        }
        let stored = (!self.s_rows.is_empty()).then_some(&self.s_rows[..]);
        let ev = self.evaluate(&new_cb, &self.scales, true, stored);
        if ev.loss <= self.loss {
            self.cb = new_cb;
            self.adopt(ev);
            if self.d == 1 {
                self.sort_codebooks();
            }
            self.update_neighbours();
            true
        } else {
            false
        }
    }

    /// `S_r` of every row (see [`Learner::s_rows`]) from the current
    /// mapping: rows in blocks of 8 so a row of `H` is reused, each `S_r`
    /// summed over `j` in order (the same sums as the uncached path).
    fn build_s_rows(&self, h: &[f32]) -> Vec<f32> {
        let (n_p, d, n_sub, n_in) = (self.n_p, self.d, self.n_sub, self.n_in);
        let kd = self.k * d;
        let mut s_rows = vec![0f32; self.n_out * kd * n_p];
        for (b, block) in s_rows.chunks_mut(8 * kd * n_p).enumerate() {
            for j in 0..n_in {
                let hrow = &h[j * n_p..(j + 1) * n_p];
                let (s, a) = (j / d, j % d);
                for (bi, srows) in block.chunks_exact_mut(kd * n_p).enumerate() {
                    let r = b * 8 + bi;
                    let p = self.idx[r * n_sub + s] as usize * d + a;
                    add_assign(&mut srows[p * n_p..(p + 1) * n_p], hrow);
                }
            }
        }
        s_rows
    }

    /// Add row `r`'s terms of the normal equations, from its `S_r`.
    fn add_normal_terms(&self, r: usize, srows: &[f32], m: &mut [f64], b: &mut [f64]) {
        let (n_p, d, n_sub) = (self.n_p, self.d, self.n_sub);
        let kd = self.k * d;
        let sc = self.scales[self.groups[r] as usize] as f64;
        let ids = &self.idx[r * n_sub..(r + 1) * n_sub];
        for p in 0..kd {
            let srow = &srows[p * n_p..(p + 1) * n_p];
            let mrow = &mut m[p * kd..(p + 1) * kd];
            for (s, &kk) in ids.iter().enumerate() {
                for a2 in 0..d {
                    mrow[kk as usize * d + a2] += sc * sc * srow[s * d + a2] as f64;
                }
            }
        }
        for (s, &kk) in ids.iter().enumerate() {
            for a in 0..d {
                b[kk as usize * d + a] += sc * self.wh[r * n_p + s * d + a] as f64;
            }
        }
    }

    /// Normal equations `M c = b` over the rows of one codebook, solved with a
    /// ridge towards the old codewords (so unused codewords stay put).
    fn solve_exact(&self, rows: &[usize], old: &[f32]) -> Option<Vec<f64>> {
        let (n_p, d, n_sub, n_in) = (self.n_p, self.d, self.n_sub, self.n_in);
        let kd = self.k * d;
        let mut m = vec![0f64; kd * kd];
        let mut b = vec![0f64; kd];
        match &self.metric {
            Metric::Diagonal(h) => {
                for &r in rows {
                    let sc = self.scales[self.groups[r] as usize] as f64;
                    for s in 0..n_sub {
                        let kk = self.idx[r * n_sub + s] as usize;
                        for a in 0..d {
                            let j = s * d + a;
                            let p = kk * d + a;
                            m[p * kd + p] += sc * sc * h[j] as f64;
                            b[p] += sc * (self.w[r * n_p + j] * h[j]) as f64;
                        }
                    }
                }
            }
            Metric::Dense { .. } if !self.s_rows.is_empty() => {
                for &r in rows {
                    let srows = &self.s_rows[r * kd * n_p..(r + 1) * kd * n_p];
                    self.add_normal_terms(r, srows, &mut m, &mut b);
                }
            }
            Metric::Dense { data: h, .. } => {
                let block = (1 << 20) / (kd * n_p).max(1);
                let block = block.clamp(1, 8);
                let mut sbuf = vec![0f32; block * kd * n_p];
                for chunk in rows.chunks(block) {
                    sbuf[..chunk.len() * kd * n_p].fill(0.0);
                    // S_r[(k,a), :] = sum over sub-vectors s mapped to k of H[s*d+a, :]
                    for j in 0..n_in {
                        let hrow = &h[j * n_p..(j + 1) * n_p];
                        let (s, a) = (j / d, j % d);
                        for (bi, &r) in chunk.iter().enumerate() {
                            let p = self.idx[r * n_sub + s] as usize * d + a;
                            let dst = &mut sbuf[(bi * kd + p) * n_p..(bi * kd + p + 1) * n_p];
                            add_assign(dst, hrow);
                        }
                    }
                    for (bi, &r) in chunk.iter().enumerate() {
                        let srows = &sbuf[bi * kd * n_p..(bi + 1) * kd * n_p];
                        self.add_normal_terms(r, srows, &mut m, &mut b);
                    }
                }
            }
        }
        let trace: f64 = (0..kd).map(|p| m[p * kd + p]).sum();
        let ridge = 1e-6 * (trace / kd as f64) + 1e-30;
        for p in 0..kd {
            m[p * kd + p] += ridge;
            b[p] += ridge * old[p] as f64;
        }
        cholesky_solve(&mut m, &mut b, kd).then_some(b)
    }

    /// Block-diagonal Newton step for large codebooks: each codeword moves by
    /// `-M_kk^{-1} ∇_k / 2`, ignoring the coupling between codewords.
    fn solve_block_newton(&self, rows: &[usize], old: &[f32]) -> Option<Vec<f64>> {
        let (n_p, d, n_sub, k) = (self.n_p, self.d, self.n_sub, self.k);
        let mut blocks = vec![0f64; k * d * d];
        let mut grad = vec![0f64; k * d];
        for &r in rows {
            let sc = self.scales[self.groups[r] as usize] as f64;
            for s in 0..n_sub {
                let kk = self.idx[r * n_sub + s] as usize;
                for a in 0..d {
                    let j = s * d + a;
                    grad[kk * d + a] += sc * self.grad[r * n_p + j] as f64;
                    for a2 in 0..d {
                        blocks[kk * d * d + a * d + a2] +=
                            sc * sc * self.metric.at(j, s * d + a2) as f64;
                    }
                }
            }
        }
        let mut out: Vec<f64> = old.iter().map(|v| *v as f64).collect();
        for kk in 0..k {
            let blk = &mut blocks[kk * d * d..(kk + 1) * d * d];
            let tr: f64 = (0..d).map(|a| blk[a * d + a]).sum();
            if tr <= 0.0 {
                continue;
            }
            for a in 0..d {
                blk[a * d + a] += 1e-6 * tr / d as f64;
            }
            let mut rhs: Vec<f64> = grad[kk * d..(kk + 1) * d].iter().map(|g| g / 2.0).collect();
            if cholesky_solve(blk, &mut rhs, d) {
                for a in 0..d {
                    out[kk * d + a] -= rhs[a];
                }
            }
        }
        Some(out)
    }

    fn sort_codebooks(&mut self) {
        let k = self.k;
        let n_cb = self.cb.len() / k;
        for c in 0..n_cb {
            let cbk = &mut self.cb[c * k..(c + 1) * k];
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|a, b| cbk[*a].total_cmp(&cbk[*b]).then(a.cmp(b)));
            if order.iter().enumerate().all(|(i, o)| i == *o) {
                continue;
            }
            let sorted: Vec<f32> = order.iter().map(|o| cbk[*o]).collect();
            cbk.copy_from_slice(&sorted);
            let mut inv = vec![0u8; k];
            for (new, old) in order.iter().enumerate() {
                inv[*old] = new as u8;
            }
            let n_p = self.n_p;
            let mut old_s = vec![];
            for r in 0..self.n_out {
                if self.cb_of(self.groups[r] as usize) == c {
                    for v in &mut self.idx[r * self.n_sub..(r + 1) * self.n_sub] {
                        *v = inv[*v as usize];
                    }
                    // Codeword `new` was `order[new]`: so is its S_r row (d = 1).
                    if !self.s_rows.is_empty() {
                        let blk = &mut self.s_rows[r * k * n_p..(r + 1) * k * n_p];
                        old_s.clear();
                        old_s.extend_from_slice(blk);
                        for (new, old) in order.iter().enumerate() {
                            blk[new * n_p..(new + 1) * n_p]
                                .copy_from_slice(&old_s[old * n_p..(old + 1) * n_p]);
                        }
                    }
                }
            }
        }
    }

    fn update_neighbours(&mut self) {
        let (k, d) = (self.k, self.d);
        if d == 1 {
            return;
        }
        let n_cb = self.cb.len() / (k * d);
        self.n_neigh = VECTOR_NEIGHBOURS.min(k - 1);
        self.neighbours = vec![0u8; n_cb * k * self.n_neigh];
        for c in 0..n_cb {
            let cbk = &self.cb[c * k * d..(c + 1) * k * d];
            for kk in 0..k {
                let mut ds: Vec<(f32, usize)> = (0..k)
                    .filter(|o| *o != kk)
                    .map(|o| {
                        let dist: f32 = (0..d)
                            .map(|a| (cbk[o * d + a] - cbk[kk * d + a]).powi(2))
                            .sum();
                        (dist, o)
                    })
                    .collect();
                ds.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                for (i, (_, o)) in ds.iter().take(self.n_neigh).enumerate() {
                    self.neighbours[(c * k + kk) * self.n_neigh + i] = *o as u8;
                }
            }
        }
    }

    /// Proximal mapping pass for scalar codewords (d = 1): the same moves,
    /// in the same order and with the same arithmetic as the general
    /// [`Self::mapping_pass`], without its per-weight candidate list and
    /// metric dispatch (the hot loop of the learning phase).
    fn mapping_pass_scalar_proximal(&mut self) -> f64 {
        let (n_p, k) = (self.n_p, self.k);
        let hdiag = self.metric.diagonal();
        let mut total = 0f64;
        for r in 0..self.n_out {
            let g = self.groups[r] as usize;
            let c = self.cb_of(g);
            let sc = self.scales[g];
            let cbk = &self.cb[c * k..(c + 1) * k];
            let idx = &mut self.idx[r * n_p..(r + 1) * n_p];
            let grow = &mut self.grad[r * n_p..(r + 1) * n_p];
            let erow = &mut self.err[r * n_p..(r + 1) * n_p];
            for j in 0..n_p {
                let cur = idx[j] as usize;
                let (g_j, h_jj) = (grow[j] as f64, hdiag[j] as f64);
                let gain = |o: usize| -> f64 {
                    let delta = sc * (cbk[o] - cbk[cur]);
                    let mut dl = g_j * delta as f64;
                    if delta != 0.0 {
                        dl += delta as f64 * delta as f64 * h_jj;
                    }
                    dl
                };
                let mut best = (0f64, usize::MAX);
                if cur > 0 {
                    let dl = gain(cur - 1);
                    if dl < best.0 {
                        best = (dl, cur - 1);
                    }
                }
                if cur + 1 < k {
                    let dl = gain(cur + 1);
                    if dl < best.0 {
                        best = (dl, cur + 1);
                    }
                }
                if best.1 == usize::MAX {
                    continue;
                }
                let o = best.1;
                idx[j] = o as u8;
                total += best.0;
                let dlt = sc * (cbk[o] - cbk[cur]);
                erow[j] += dlt;
                match &self.metric {
                    Metric::Diagonal(h) => grow[j] += 2.0 * dlt * h[j],
                    Metric::Dense { data, .. } => {
                        let hrow = &data[j * n_p..(j + 1) * n_p];
                        axpy(grow, 2.0 * dlt, hrow);
                        if !self.s_rows.is_empty() {
                            let srows = &mut self.s_rows[r * k * n_p..(r + 1) * k * n_p];
                            sub_assign(&mut srows[cur * n_p..(cur + 1) * n_p], hrow);
                            add_assign(&mut srows[o * n_p..(o + 1) * n_p], hrow);
                        }
                    }
                }
            }
        }
        self.loss = (self.loss + total).max(0.0);
        total
    }

    /// One mapping pass over every sub-vector. Returns the loss change.
    pub fn mapping_pass(&mut self, rule: MoveRule) -> f64 {
        if self.d == 1 && rule == MoveRule::Proximal {
            return self.mapping_pass_scalar_proximal();
        }
        let (n_p, d, k, n_sub) = (self.n_p, self.d, self.k, self.n_sub);
        let mut total = 0f64;
        let mut cands: Vec<usize> = Vec::with_capacity(k);
        let mut delta = vec![0f32; d];
        for r in 0..self.n_out {
            let g = self.groups[r] as usize;
            let c = self.cb_of(g);
            let sc = self.scales[g];
            for s in 0..n_sub {
                let cur = self.idx[r * n_sub + s] as usize;
                cands.clear();
                match (rule, d) {
                    (MoveRule::Unconstrained, _) => cands.extend((0..k).filter(|o| *o != cur)),
                    (MoveRule::Proximal, 1) => {
                        if cur > 0 {
                            cands.push(cur - 1);
                        }
                        if cur + 1 < k {
                            cands.push(cur + 1);
                        }
                    }
                    (MoveRule::Proximal, _) => {
                        let nb = &self.neighbours
                            [(c * k + cur) * self.n_neigh..(c * k + cur + 1) * self.n_neigh];
                        cands.extend(nb.iter().map(|v| *v as usize));
                    }
                }
                let cbk = &self.cb[c * k * d..(c + 1) * k * d];
                let grow = &self.grad[r * n_p + s * d..r * n_p + (s + 1) * d];
                let mut best = (0f64, usize::MAX);
                for &o in &cands {
                    let mut dl = 0f64;
                    for a in 0..d {
                        delta[a] = sc * (cbk[o * d + a] - cbk[cur * d + a]);
                        dl += grow[a] as f64 * delta[a] as f64;
                    }
                    for a in 0..d {
                        if delta[a] == 0.0 {
                            continue;
                        }
                        for a2 in 0..d {
                            dl += delta[a] as f64
                                * delta[a2] as f64
                                * self.metric.at(s * d + a, s * d + a2) as f64;
                        }
                    }
                    if dl < best.0 {
                        best = (dl, o);
                    }
                }
                if best.1 == usize::MAX {
                    continue;
                }
                let o = best.1;
                self.idx[r * n_sub + s] = o as u8;
                total += best.0;
                let grow = &mut self.grad[r * n_p..(r + 1) * n_p];
                for a in 0..d {
                    let dlt = sc * (cbk[o * d + a] - cbk[cur * d + a]);
                    let j = s * d + a;
                    self.err[r * n_p + j] += dlt;
                    match &self.metric {
                        Metric::Diagonal(h) => grow[j] += 2.0 * dlt * h[j],
                        Metric::Dense { data, .. } => {
                            let hrow = &data[j * n_p..(j + 1) * n_p];
                            axpy(grow, 2.0 * dlt, hrow);
                            if !self.s_rows.is_empty() {
                                let kd = k * d;
                                let srows = &mut self.s_rows[r * kd * n_p..(r + 1) * kd * n_p];
                                let (from, to) = (cur * d + a, o * d + a);
                                sub_assign(&mut srows[from * n_p..(from + 1) * n_p], hrow);
                                add_assign(&mut srows[to * n_p..(to + 1) * n_p], hrow);
                            }
                        }
                    }
                }
            }
        }
        self.loss = (self.loss + total).max(0.0);
        total
    }

    /// Run the sweeps, reporting every step. `on_step` returns false to stop.
    pub fn learn(
        &mut self,
        iters: u32,
        rule: MoveRule,
        tol: f64,
        on_step: &mut dyn FnMut(LossPoint) -> bool,
    ) -> bool {
        for sweep in 1..=iters {
            let before = self.loss;
            self.codebook_step();
            if !on_step(LossPoint {
                sweep,
                kind: StepKind::Codebook,
                loss: self.loss,
            }) {
                return false;
            }
            for _ in 0..MAX_MAPPING_PASSES {
                let start = self.loss;
                let gain = -self.mapping_pass(rule);
                if !on_step(LossPoint {
                    sweep,
                    kind: StepKind::Mapping,
                    loss: self.loss,
                }) {
                    return false;
                }
                if gain <= tol * start {
                    break;
                }
            }
            if before <= 0.0 || (before - self.loss) / before < tol {
                break;
            }
        }
        true
    }

    /// Unpadded reconstruction error `Ŵ - W` of row `r`.
    pub fn err_row(&self, r: usize) -> &[f32] {
        &self.err[r * self.n_p..r * self.n_p + self.n_in]
    }

    /// `sum_r w_r^T H w_r`, the loss of predicting zero.
    pub fn reference_loss(&self) -> f64 {
        match &self.metric {
            Metric::Dense { .. } => dot64(&self.w, &self.wh),
            Metric::Diagonal(h) => self
                .w
                .iter()
                .enumerate()
                .map(|(i, x)| *x as f64 * (*x * h[i % self.n_p]) as f64)
                .sum(),
        }
    }
}

/// What [`Learner::evaluate`] found.
struct Evaluation {
    loss: f64,
    scales: Vec<f32>,
    /// Dense metric: the error `E` and gradient `G`. Diagonal: `None`
    /// ([`Learner::adopt`] recomputes them in place).
    err_grad: Option<(Vec<f32>, Vec<f32>)>,
}

/// Least-squares group scales `num / den`, rounded to f16; a group keeps its
/// scale when the fit is degenerate.
fn refit_scales(scales: &mut [f32], num: &[f64], den: &[f64]) {
    for g in 0..scales.len() {
        if den[g] > 0.0 {
            let s = round16((num[g] / den[g]) as f32);
            if s.is_finite() && s != 0.0 {
                scales[g] = s;
            }
        }
    }
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Index of the nearest value in an ascending codebook (ties to the lower).
fn nearest_sorted(cb: &[f32], x: f32) -> u8 {
    let pos = cb.partition_point(|c| *c < x);
    if pos == 0 {
        return 0;
    }
    if pos >= cb.len() {
        return (cb.len() - 1) as u8;
    }
    if (x - cb[pos - 1]) <= (cb[pos] - x) {
        (pos - 1) as u8
    } else {
        pos as u8
    }
}

/// Solve `m x = b` in place for symmetric positive definite `m` (`n x n`).
/// Returns false if `m` is not positive definite.
pub(crate) fn cholesky_solve(m: &mut [f64], b: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut s = m[j * n + j];
        for p in 0..j {
            s -= m[j * n + p] * m[j * n + p];
        }
        if s <= 0.0 || !s.is_finite() {
            return false;
        }
        let l = s.sqrt();
        m[j * n + j] = l;
        for i in j + 1..n {
            let mut t = m[i * n + j];
            for p in 0..j {
                t -= m[i * n + p] * m[j * n + p];
            }
            m[i * n + j] = t / l;
        }
    }
    for i in 0..n {
        let mut t = b[i];
        for p in 0..i {
            t -= m[i * n + p] * b[p];
        }
        b[i] = t / m[i * n + i];
    }
    for i in (0..n).rev() {
        let mut t = b[i];
        for p in i + 1..n {
            t -= m[p * n + i] * b[p];
        }
        b[i] = t / m[i * n + i];
    }
    b.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::hessian::Hessian;

    /// A dense `H = XᵀX/n + damping` and a weight with planted structure.
    fn problem(n_out: usize, n_in: usize) -> (Vec<f32>, Hessian) {
        let mut s = 12345u64;
        let mut next = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let w: Vec<f32> = (0..n_out * n_in).map(|_| next()).collect();
        let n = 4 * n_in;
        let x: Vec<f32> = (0..n * n_in).map(|_| next()).collect();
        let mut h = vec![0f32; n_in * n_in];
        for t in 0..n {
            let xt = &x[t * n_in..(t + 1) * n_in];
            for i in 0..n_in {
                for j in 0..n_in {
                    h[i * n_in + j] += xt[i] * xt[j] / n as f32;
                }
            }
        }
        let shape = [n_in, n_in];
        (
            w,
            Hessian::from_calibration("t", n_in, &shape, h, 0.01).unwrap(),
        )
    }

    /// The cached `S_r = A_rᵀ H`, updated move by move through the mapping
    /// passes, stays equal (to float rounding) to `S_r` rebuilt from the
    /// final mapping, for scalar and vector codewords.
    #[test]
    fn kept_s_rows_follow_the_mapping() {
        for (d, bits) in [(1usize, 2u8), (2, 3)] {
            let (n_out, n_in) = (24, 40);
            let (w, h) = problem(n_out, n_in);
            let metric = h.padded(n_in.div_ceil(d) * d);
            let groups: Vec<u8> = (0..n_out).map(|r| (r % 3) as u8).collect();
            let mut l = Learner::init(
                w,
                n_out,
                n_in,
                metric,
                d,
                bits,
                Mode::Codebook,
                groups,
                3,
                7,
                "t",
            );
            let start = l.loss;
            let mut moved = 0.0;
            for _ in 0..4 {
                l.codebook_step();
                assert!(!l.s_rows.is_empty(), "d={d}: S kept");
                moved += l.mapping_pass(MoveRule::Proximal);
            }
            assert!(
                moved < 0.0 && l.loss < start,
                "d={d}: learning moved nothing"
            );
            let Metric::Dense { data, .. } = &l.metric else {
                unreachable!()
            };
            let fresh = l.build_s_rows(data);
            let scale = fresh.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = l
                .s_rows
                .iter()
                .zip(&fresh)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "d={d}: drift {worst} vs scale {scale}"
            );
        }
    }
}
