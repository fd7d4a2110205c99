//! Training and evaluating a [`NetworkGroup`]: per-network losses and gradient clipping, one
//! epoch of training, and evaluation.

use tch::{Kind, Reduction, Tensor};

use crate::nn::adam::Adam;
use crate::nn::batch::{make_batch, Example};
use crate::nn::train::epoch_order;
use crate::nn::{NnError, NnResult};

use super::group::NetworkGroup;

/// Per-network batch-mean cross-entropy `[N]` of logits `[N, B, C]` against shared labels `[B]`.
pub fn per_network_cross_entropy(logits: &Tensor, labels: &Tensor) -> NnResult<Tensor> {
    let size = logits.size();
    let (count, batch) = (size[0], size[1]);
    let flat = logits.f_reshape([count * batch, -1])?;
    let targets = labels.f_repeat([count])?;
    Ok(flat
        .f_cross_entropy_loss::<Tensor>(&targets, None, Reduction::None, -100, 0.0)?
        .f_reshape([count, batch])?
        .f_mean_dim(&[1i64][..], false, None::<Kind>)?)
}

/// Clips each network's gradients to a total 2-norm of at most `max_norm`, as
/// `clip_grad_norm_` would on that network alone (coef = max_norm / (norm + 1e-6), clamped to 1).
/// `gradients` are group-layout tensors with the network axis first. Returns the norms.
pub fn clip_grad_norm_per_network(
    gradients: &[Tensor],
    count: usize,
    max_norm: f64,
) -> NnResult<Vec<f64>> {
    let _guard = tch::no_grad_guard();
    let defined: Vec<&Tensor> = gradients.iter().filter(|g| g.defined()).collect();
    if defined.is_empty() {
        return Ok(vec![0.0; count]);
    }
    let mut squares: Option<Tensor> = None;
    for gradient in &defined {
        let per_network = gradient
            .f_reshape([count as i64, -1])?
            .f_square()?
            .f_sum_dim_intlist(&[1i64][..], false, None::<Kind>)?;
        squares = Some(match squares {
            Some(total) => total.f_add(&per_network)?,
            None => per_network,
        });
    }
    let norms = squares
        .ok_or_else(|| NnError::InvalidData("no gradients".into()))?
        .f_sqrt()?;
    let coef = norms
        .f_add_scalar(1e-6)?
        .f_reciprocal()?
        .f_mul_scalar(max_norm)?
        .f_clamp_max(1.0)?;
    for gradient in defined {
        let mut shape = vec![1i64; gradient.dim()];
        shape[0] = count as i64;
        let mut gradient = gradient.shallow_clone();
        let _ = gradient.f_mul_(&coef.f_reshape(&shape)?)?;
    }
    Ok(Vec::<f64>::try_from(&norms.f_to_kind(Kind::Double)?)?)
}

/// Per-network totals of one pass over a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupPass {
    /// Sum over batches of each network's batch-mean loss.
    pub losses: Vec<f64>,
    /// Fraction of sequences each network classified correctly.
    pub accuracies: Vec<f64>,
}

fn accumulate(
    logits: &Tensor,
    labels: &Tensor,
    losses: &Tensor,
    loss_sums: &mut [f64],
    correct: &mut [i64],
) -> NnResult<()> {
    let batch_losses = Vec::<f64>::try_from(&losses.f_detach()?.f_to_kind(Kind::Double)?)?;
    let hits = Vec::<i64>::try_from(
        &logits
            .f_detach()?
            .f_argmax(-1, false)?
            .f_eq_tensor(&labels.f_unsqueeze(0)?)?
            .f_sum_dim_intlist(&[1i64][..], false, Kind::Int64)?,
    )?;
    for (sum, value) in loss_sums.iter_mut().zip(batch_losses) {
        *sum += value;
    }
    for (total, value) in correct.iter_mut().zip(hits) {
        *total += value;
    }
    Ok(())
}

/// One training epoch for every network of the group, all on the same batches in the order of
/// [`epoch_order`]`(len, shuffle_seed, epoch)`: forward, per-network losses summed, backward,
/// per-network clipping, one (elementwise, hence per-network) Adam step.
pub fn train_group_epoch(
    group: &NetworkGroup,
    adam: &mut Adam,
    data: &[Example],
    batch_size: usize,
    clip_norm: Option<f64>,
    shuffle_seed: u64,
    epoch: u64,
) -> NnResult<GroupPass> {
    if data.is_empty() || batch_size == 0 {
        return Err(NnError::InvalidData(
            "training needs examples and a batch size of at least 1".into(),
        ));
    }
    let order = epoch_order(data.len(), shuffle_seed, epoch);
    let mut loss_sums = vec![0.0; group.len()];
    let mut correct = vec![0i64; group.len()];
    for chunk in order.chunks(batch_size) {
        let examples: Vec<&Example> = chunk.iter().map(|&i| &data[i]).collect();
        let batch = make_batch(&examples)?.to_device(group.device())?;
        adam.zero_grad();
        let logits = group.forward(&batch)?;
        let losses = per_network_cross_entropy(&logits, &batch.labels)?;
        // Network k's parameters only reach loss k, so the sum's gradient is each network's own.
        losses.f_sum(Kind::Float)?.f_backward()?;
        if let Some(max_norm) = clip_norm {
            clip_grad_norm_per_network(&adam.gradients(), group.len(), max_norm)?;
        }
        adam.step()?;
        accumulate(
            &logits,
            &batch.labels,
            &losses,
            &mut loss_sums,
            &mut correct,
        )?;
    }
    Ok(GroupPass {
        losses: loss_sums,
        accuracies: correct
            .iter()
            .map(|&c| c as f64 / data.len() as f64)
            .collect(),
    })
}

/// Evaluates every network of the group without gradients, batches in data order.
pub fn evaluate_group(
    group: &NetworkGroup,
    data: &[Example],
    batch_size: usize,
) -> NnResult<GroupPass> {
    if data.is_empty() || batch_size == 0 {
        return Err(NnError::InvalidData(
            "evaluation needs examples and a batch size of at least 1".into(),
        ));
    }
    let _guard = tch::no_grad_guard();
    let mut loss_sums = vec![0.0; group.len()];
    let mut correct = vec![0i64; group.len()];
    for chunk in data.chunks(batch_size) {
        let examples: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&examples)?.to_device(group.device())?;
        let logits = group.forward(&batch)?;
        let losses = per_network_cross_entropy(&logits, &batch.labels)?;
        accumulate(
            &logits,
            &batch.labels,
            &losses,
            &mut loss_sums,
            &mut correct,
        )?;
    }
    Ok(GroupPass {
        losses: loss_sums,
        accuracies: correct
            .iter()
            .map(|&c| c as f64 / data.len() as f64)
            .collect(),
    })
}
