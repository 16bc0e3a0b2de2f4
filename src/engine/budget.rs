//! Bit allocation under a size budget.
//!
//! Given, for every compressed tensor, a few candidate bit widths with their
//! exact stored bytes and an estimated loss, pick one candidate per tensor so
//! that the total bytes fit the budget and the total loss is as low as
//! possible. Greedy marginal gain: every tensor starts at its cheapest
//! candidate; upgrades are taken in decreasing order of loss drop per extra
//! stored byte, walking each tensor's lower convex hull of (bytes, loss) so
//! the greedy order is the optimal one for the continuous relaxation; then
//! the leftover bytes are filled with the single best upgrade that still
//! fits, repeatedly.
//!
//! Losses come from [`estimate_losses`]: the engine's initialisation only
//! (grouping + weighted k-means, no learning sweeps) on an evenly spaced
//! sample of rows, scaled to the full row count. It ranks bit widths and
//! tensors consistently at a few percent of the cost of compressing.

use crate::format::safetensors::Dtype;

use super::compress::{compress_matrix, CompressOptions, Control};
use super::error::{EngineError, Result};
use super::hessian::Hessian;

/// One way to store a tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Bits per index.
    pub bits: u8,
    /// Stored bytes with these bits (data and header).
    pub bytes: u64,
    /// Estimated loss `L` of the whole tensor with these bits.
    pub loss: f64,
}

/// The candidates of one tensor, by increasing bits.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorChoices {
    /// Tensor name.
    pub name: String,
    /// Candidates, by increasing bits (at least one).
    pub candidates: Vec<Candidate>,
}

/// The chosen candidate of every tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Index into each tensor's `candidates`.
    pub choice: Vec<usize>,
    /// Total bytes of the chosen candidates.
    pub bytes: u64,
    /// Total estimated loss.
    pub loss: f64,
}

impl Allocation {
    /// The chosen bits of tensor `t`.
    pub fn bits(&self, tensors: &[TensorChoices], t: usize) -> u8 {
        tensors[t].candidates[self.choice[t]].bits
    }
}

/// Choose candidates with total bytes at most `budget` and the least total
/// estimated loss (greedy on marginal gain, see the module doc).
pub fn allocate(tensors: &[TensorChoices], budget: u64) -> Result<Allocation> {
    let mut choice = vec![0usize; tensors.len()];
    for (t, tc) in tensors.iter().enumerate() {
        if tc.candidates.is_empty() {
            return Err(EngineError::InvalidOptions(format!(
                "tensor `{}` has no bit width to choose from",
                tc.name
            )));
        }
        // Cheapest candidate (ties: lowest loss).
        choice[t] = (0..tc.candidates.len())
            .min_by(|&a, &b| {
                let (ca, cb) = (&tc.candidates[a], &tc.candidates[b]);
                ca.bytes.cmp(&cb.bytes).then(ca.loss.total_cmp(&cb.loss))
            })
            .unwrap_or(0);
    }
    let used = |choice: &[usize]| -> u64 {
        choice
            .iter()
            .zip(tensors)
            .map(|(c, tc)| tc.candidates[*c].bytes)
            .sum()
    };
    let minimum = used(&choice);
    if minimum > budget {
        return Err(EngineError::InvalidOptions(format!(
            "the budget of {budget} bytes is below the smallest possible size, {minimum} bytes \
             (every tensor at its fewest bits); raise the target or lower --min-bits"
        )));
    }
    // Hull steps of every tensor: (ratio, tensor, from, to).
    let mut steps: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (t, tc) in tensors.iter().enumerate() {
        let hull = lower_hull(&tc.candidates, choice[t]);
        for w in hull.windows(2) {
            let (a, b) = (&tc.candidates[w[0]], &tc.candidates[w[1]]);
            let ratio = (a.loss - b.loss) / (b.bytes - a.bytes) as f64;
            steps.push((ratio, t, w[0], w[1]));
        }
    }
    steps.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut left = budget - minimum;
    let mut blocked = vec![false; tensors.len()];
    for &(_, t, from, to) in &steps {
        if blocked[t] || choice[t] != from {
            continue;
        }
        let extra = tensors[t].candidates[to].bytes - tensors[t].candidates[from].bytes;
        if extra <= left {
            left -= extra;
            choice[t] = to;
        } else {
            // The rest of this tensor's hull costs even more per step.
            blocked[t] = true;
        }
    }
    // Fill: the single upgrade with the largest loss drop that still fits.
    loop {
        let mut best: Option<(f64, usize, usize, u64)> = None;
        for (t, tc) in tensors.iter().enumerate() {
            let cur = &tc.candidates[choice[t]];
            for (j, c) in tc.candidates.iter().enumerate() {
                if c.bytes < cur.bytes || c.loss >= cur.loss {
                    continue;
                }
                let extra = c.bytes - cur.bytes;
                let drop = cur.loss - c.loss;
                if extra <= left && best.is_none_or(|b| drop > b.0) {
                    best = Some((drop, t, j, extra));
                }
            }
        }
        match best {
            Some((_, t, j, extra)) => {
                choice[t] = j;
                left -= extra;
            }
            None => break,
        }
    }
    let bytes = used(&choice);
    let loss = choice
        .iter()
        .zip(tensors)
        .map(|(c, tc)| tc.candidates[*c].loss)
        .sum();
    Ok(Allocation {
        choice,
        bytes,
        loss,
    })
}

/// Indices of the lower convex hull of the candidates' (bytes, loss) points,
/// starting at `start` and going to more bytes and less loss.
fn lower_hull(c: &[Candidate], start: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..c.len())
        .filter(|&i| c[i].bytes > c[start].bytes && c[i].loss < c[start].loss)
        .collect();
    order.sort_by(|&a, &b| {
        c[a].bytes
            .cmp(&c[b].bytes)
            .then(c[a].loss.total_cmp(&c[b].loss))
    });
    let mut hull = vec![start];
    for i in order {
        // Drop points dominated by the new one (not lower loss).
        if c[i].loss >= c[*hull.last().unwrap_or(&start)].loss {
            continue;
        }
        while hull.len() >= 2 {
            let (a, b) = (&c[hull[hull.len() - 2]], &c[hull[hull.len() - 1]]);
            // Slope a->b must be steeper (more negative) than a->i.
            let s_ab = (b.loss - a.loss) / (b.bytes - a.bytes) as f64;
            let s_ai = (c[i].loss - a.loss) / (c[i].bytes - a.bytes) as f64;
            if s_ai <= s_ab {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(i);
    }
    hull
}

/// Rows sampled for a loss estimate.
pub const SAMPLE_ROWS: usize = 512;

/// The evenly spaced rows of an `n_out`-row matrix that [`estimate_losses`]
/// reads (all rows if there are at most `SAMPLE_ROWS`).
pub fn sample_rows(n_out: usize) -> Vec<usize> {
    let m = n_out.min(SAMPLE_ROWS);
    (0..m).map(|i| i * n_out / m).collect()
}

/// Estimated loss of a whole `n_out x n_in` tensor at each of `bits`, from
/// the sampled rows `rows` (`rows.len() / n_in` of them, see [`sample_rows`]):
/// the engine's initialisation (no learning sweeps) on the sample, with the
/// group count scaled so each group has as many rows as in the full tensor,
/// times `n_out / sampled rows`.
pub fn estimate_losses(
    name: &str,
    rows: &[f32],
    n_out: usize,
    n_in: usize,
    h: &Hessian,
    opts: &CompressOptions,
    bits: &[u8],
) -> Result<Vec<f64>> {
    let m = rows.len() / n_in.max(1);
    if m == 0 || m * n_in != rows.len() {
        return Err(EngineError::Tensor {
            name: name.to_string(),
            problem: "no rows to estimate the loss from".into(),
        });
    }
    let groups = (opts.groups as usize * m)
        .div_ceil(n_out)
        .clamp(1, m.min(256));
    let mut out = Vec::with_capacity(bits.len());
    for &b in bits {
        let o = CompressOptions {
            bits: b,
            groups: groups as u16,
            iters: 0,
            ..opts.clone()
        };
        let (_, rep) = compress_matrix(
            name,
            Dtype::F32,
            &[m, n_in],
            rows,
            m,
            n_in,
            h,
            &o,
            &mut |_| Control::Continue,
        )?;
        let loss = rep.losses.last().map_or(0.0, |p| p.loss);
        out.push(loss * n_out as f64 / m as f64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bits: u8, bytes: u64, loss: f64) -> Candidate {
        Candidate { bits, bytes, loss }
    }

    #[test]
    fn greedy_prefers_the_steepest_loss_drop() {
        let t = vec![
            TensorChoices {
                name: "flat".into(),
                candidates: vec![cand(2, 100, 10.0), cand(3, 150, 9.0)],
            },
            TensorChoices {
                name: "steep".into(),
                candidates: vec![cand(2, 100, 10.0), cand(3, 150, 2.0)],
            },
        ];
        let a = allocate(&t, 260).expect("fits");
        assert_eq!(a.choice, vec![0, 1]);
        assert_eq!(a.bytes, 250);
        assert!(allocate(&t, 150).is_err());
    }

    #[test]
    fn hull_skips_a_non_convex_point() {
        let c = vec![cand(1, 10, 100.0), cand(2, 20, 90.0), cand(3, 30, 10.0)];
        assert_eq!(lower_hull(&c, 0), vec![0, 2]);
    }
}
