//! [`NetworkGroup`]: many networks of one variant as one padded tensor program, with the
//! placement of every member's parameters in the group's tensors.

use tch::{Kind, Tensor};

use crate::nn::batch::Batch;
use crate::nn::cell::{projection_bias, run_projected, Variant};
use crate::nn::model::Readout;
use crate::nn::{NnError, NnResult};

use super::network::{constant, leaf, read_out, RandomNetwork};
use super::{CLASS_COUNT, VOCAB_SIZE};

/// A dense row-major buffer with a shape, for assembling padded group tensors.
struct Buffer {
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Buffer {
    fn zeros(shape: &[usize]) -> Self {
        Buffer {
            shape: shape.to_vec(),
            values: vec![0.0; shape.iter().product()],
        }
    }

    fn offset(&self, index: &[usize]) -> usize {
        index
            .iter()
            .zip(&self.shape)
            .fold(0, |acc, (&i, &extent)| acc * extent + i)
    }

    fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }
}

/// Where one reference parameter's elements live in the group's parameter list.
#[derive(Debug, Clone)]
struct Placement {
    /// Index into the group's parameter list.
    parameter: usize,
    /// Flat offset in that group tensor of each reference element, row-major.
    offsets: Vec<i64>,
    /// The reference tensor's shape.
    shape: Vec<i64>,
}

/// The recurrent slots of one target layer in a group. Each network numbers its connections into
/// the layer 0 (main), 1, 2, … (skips by ascending source), so the slot count is the largest
/// per-network count, not the number of distinct sources in the group; a slot then reads
/// different layers in different networks, which the input pairs express.
#[derive(Debug)]
struct GroupLayer {
    slot_count: usize,
    /// Per input pair: (slot, layer read or `None` for the embedding), each with a weight
    /// `[N, G·W, W_source]` that is zero (masked) for networks whose slot reads another layer.
    inputs: Vec<(usize, Option<usize>)>,
    weight_ih: Vec<Tensor>,
    mask_ih: Vec<Tensor>,
    /// `[N, S, G·W, W]`
    weight_hh: Tensor,
    mask_hh: Tensor,
    /// `[N, S, 1, G·W]`
    bias_ih: Tensor,
    bias_hh: Tensor,
    bias_mask: Tensor,
}

/// Many randomly structured networks of one variant computed as one tensor program.
#[derive(Debug)]
pub struct NetworkGroup {
    variant: Variant,
    readout: Readout,
    count: usize,
    widths: Vec<usize>,
    head_width: usize,
    /// `[N, 128, W_0]`
    embedding: Tensor,
    layers: Vec<GroupLayer>,
    /// `[N, 2, W_head]` and its mask; bias `[N, 1, 2]`.
    head_weight: Tensor,
    head_mask: Tensor,
    head_bias: Tensor,
    /// For each layer that is some network's last: the layer and a `[N, 1, 1]` 0/1 selector.
    readout_layers: Vec<(usize, Tensor)>,
    /// Per network, per reference parameter (in `named_parameters` order).
    placements: Vec<Vec<Placement>>,
}

impl NetworkGroup {
    /// Stacks networks (all of the same variant and readout) into one padded group with the same
    /// parameter values.
    pub fn from_networks(networks: &[RandomNetwork]) -> NnResult<Self> {
        let first = networks
            .first()
            .ok_or_else(|| NnError::InvalidConfig("a group needs at least one network".into()))?;
        let (variant, readout) = (first.variant, first.readout);
        if networks
            .iter()
            .any(|n| n.variant != variant || n.readout != readout)
        {
            return Err(NnError::InvalidConfig(
                "all networks of a group need the same variant and readout".into(),
            ));
        }
        let count = networks.len();
        let gates = variant.gate_count() as usize;
        let layer_count = networks
            .iter()
            .map(|n| n.structure.layer_count())
            .max()
            .unwrap_or(0);
        let mut widths = vec![1usize; layer_count];
        for network in networks {
            for (layer, &size) in network.structure.layer_sizes.iter().enumerate() {
                widths[layer] = widths[layer].max(size);
            }
        }
        let head_width = networks
            .iter()
            .map(|n| n.structure.layer_sizes[n.structure.last_layer()])
            .max()
            .unwrap_or(1);
        // Per network, the slot of each connection: its rank among the connections into its
        // target layer (main first, then skips by source, the order of `connections`).
        let member_slots: Vec<Vec<usize>> = networks
            .iter()
            .map(|network| {
                let mut next = vec![0usize; layer_count];
                network
                    .structure
                    .connections
                    .iter()
                    .map(|c| {
                        next[c.target] += 1;
                        next[c.target] - 1
                    })
                    .collect()
            })
            .collect();
        let mut slot_counts = vec![1usize; layer_count];
        let mut inputs: Vec<Vec<(usize, Option<usize>)>> = vec![Vec::new(); layer_count];
        for (network, slots) in networks.iter().zip(&member_slots) {
            for (connection, &slot) in network.structure.connections.iter().zip(slots) {
                let layer = connection.target;
                slot_counts[layer] = slot_counts[layer].max(slot + 1);
                if !inputs[layer].contains(&(slot, connection.source)) {
                    inputs[layer].push((slot, connection.source));
                }
            }
        }
        for pairs in &mut inputs {
            pairs.sort();
        }

        // The group's parameter list: embedding, per layer (ih per slot, hh, bias_ih, bias_hh),
        // head weight, head bias. Buffers for values and masks in the same order.
        let mut values: Vec<Buffer> = Vec::new();
        let mut masks: Vec<Option<Buffer>> = Vec::new();
        values.push(Buffer::zeros(&[count, VOCAB_SIZE as usize, widths[0]]));
        masks.push(None);
        let mut layer_parameters = Vec::with_capacity(layer_count);
        for (layer, pairs) in inputs.iter().enumerate() {
            let rows = gates * widths[layer];
            let ih_start = values.len();
            for (_, source) in pairs {
                let input = source.map_or(widths[0], |s| widths[s]);
                values.push(Buffer::zeros(&[count, rows, input]));
                masks.push(Some(Buffer::zeros(&[count, rows, input])));
            }
            let hh = values.len();
            let slot_count = slot_counts[layer];
            values.push(Buffer::zeros(&[count, slot_count, rows, widths[layer]]));
            masks.push(Some(Buffer::zeros(&[
                count,
                slot_count,
                rows,
                widths[layer],
            ])));
            values.push(Buffer::zeros(&[count, slot_count, 1, rows]));
            masks.push(Some(Buffer::zeros(&[count, slot_count, 1, rows])));
            values.push(Buffer::zeros(&[count, slot_count, 1, rows]));
            masks.push(None);
            layer_parameters.push((ih_start, hh));
        }
        let head = values.len();
        values.push(Buffer::zeros(&[count, CLASS_COUNT as usize, head_width]));
        masks.push(Some(Buffer::zeros(&[
            count,
            CLASS_COUNT as usize,
            head_width,
        ])));
        values.push(Buffer::zeros(&[count, 1, CLASS_COUNT as usize]));
        masks.push(None);

        let mut placements = Vec::with_capacity(count);
        for (member, network) in networks.iter().enumerate() {
            let mut member_placements = Vec::new();
            let reference = network.named_parameters();
            let mut reference_values = reference.iter().map(|(_, t)| tensor_values(t));
            let mut next_values = || -> NnResult<Vec<f32>> {
                reference_values.next().unwrap_or_else(|| {
                    Err(NnError::InvalidConfig("parameter list mismatch".into()))
                })
            };
            let structure = &network.structure;
            // Embedding [128, s0] → [n, v, k].
            let first_width = structure.layer_sizes[0];
            let mut offsets = Vec::new();
            for token in 0..VOCAB_SIZE as usize {
                for unit in 0..first_width {
                    offsets.push(values[0].offset(&[member, token, unit]) as i64);
                }
            }
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                0,
                offsets,
                vec![VOCAB_SIZE, first_width as i64],
                &next_values()?,
                None,
            );
            for (connection, &slot) in structure.connections.iter().zip(&member_slots[member]) {
                let layer = connection.target;
                let (ih_start, hh) = layer_parameters[layer];
                let pair = inputs[layer]
                    .iter()
                    .position(|p| *p == (slot, connection.source))
                    .ok_or_else(|| NnError::InvalidConfig("connection without a slot".into()))?;
                let hidden = structure.layer_sizes[layer];
                let input = structure.input_width(connection);
                let width = widths[layer];
                let row = |gate: usize, unit: usize| gate * width + unit;
                let ih = ih_start + pair;
                let mut ih_offsets = Vec::new();
                let mut hh_offsets = Vec::new();
                let mut bias_offsets = Vec::new();
                let mut bias_hh_offsets = Vec::new();
                for gate in 0..gates {
                    for unit in 0..hidden {
                        for column in 0..input {
                            ih_offsets
                                .push(values[ih].offset(&[member, row(gate, unit), column]) as i64);
                        }
                        for column in 0..hidden {
                            hh_offsets.push(values[hh].offset(&[
                                member,
                                slot,
                                row(gate, unit),
                                column,
                            ]) as i64);
                        }
                        bias_offsets
                            .push(values[hh + 1].offset(&[member, slot, 0, row(gate, unit)]) as i64);
                        bias_hh_offsets.push(values[hh + 2].offset(&[
                            member,
                            slot,
                            0,
                            row(gate, unit),
                        ]) as i64);
                    }
                }
                let rows = (gates * hidden) as i64;
                let input_mask = structure.input_mask(connection, gates);
                let hh_ones = vec![1f32; hh_offsets.len()];
                let bias_ones = vec![1f32; bias_offsets.len()];
                let weight_ih = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    ih,
                    ih_offsets,
                    vec![rows, input as i64],
                    &weight_ih,
                    Some(&input_mask),
                );
                let weight_hh = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh,
                    hh_offsets,
                    vec![rows, hidden as i64],
                    &weight_hh,
                    Some(&hh_ones),
                );
                let bias_ih = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh + 1,
                    bias_offsets,
                    vec![rows],
                    &bias_ih,
                    Some(&bias_ones),
                );
                let bias_hh = next_values()?;
                place(
                    &mut values,
                    &mut masks,
                    &mut member_placements,
                    hh + 2,
                    bias_hh_offsets,
                    vec![rows],
                    &bias_hh,
                    None,
                );
            }
            let last = structure.layer_sizes[structure.last_layer()];
            let mut head_offsets = Vec::new();
            for class in 0..CLASS_COUNT as usize {
                for unit in 0..last {
                    head_offsets.push(values[head].offset(&[member, class, unit]) as i64);
                }
            }
            let head_ones = vec![1f32; head_offsets.len()];
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                head,
                head_offsets,
                vec![CLASS_COUNT, last as i64],
                &next_values()?,
                Some(&head_ones),
            );
            let bias_offsets = (0..CLASS_COUNT as usize)
                .map(|class| values[head + 1].offset(&[member, 0, class]) as i64)
                .collect();
            place(
                &mut values,
                &mut masks,
                &mut member_placements,
                head + 1,
                bias_offsets,
                vec![CLASS_COUNT],
                &next_values()?,
                None,
            );
            placements.push(member_placements);
        }

        let to_leaf = |buffer: &Buffer| leaf(&buffer.values, &buffer.shape_i64());
        let to_mask = |buffer: &Option<Buffer>| -> NnResult<Tensor> {
            match buffer {
                Some(b) => constant(&b.values, &b.shape_i64()),
                None => Err(NnError::InvalidConfig("missing mask buffer".into())),
            }
        };
        let embedding = to_leaf(&values[0])?;
        let mut layers = Vec::with_capacity(layer_count);
        for (layer, pairs) in inputs.into_iter().enumerate() {
            let (ih_start, hh) = layer_parameters[layer];
            let mut weight_ih = Vec::with_capacity(pairs.len());
            let mut mask_ih = Vec::with_capacity(pairs.len());
            for index in 0..pairs.len() {
                weight_ih.push(to_leaf(&values[ih_start + index])?);
                mask_ih.push(to_mask(&masks[ih_start + index])?);
            }
            layers.push(GroupLayer {
                slot_count: slot_counts[layer],
                inputs: pairs,
                weight_ih,
                mask_ih,
                weight_hh: to_leaf(&values[hh])?,
                mask_hh: to_mask(&masks[hh])?,
                bias_ih: to_leaf(&values[hh + 1])?,
                bias_hh: to_leaf(&values[hh + 2])?,
                bias_mask: to_mask(&masks[hh + 1])?,
            });
        }
        let mut readout_layers = Vec::new();
        for layer in 0..layer_count {
            let selector: Vec<f32> = networks
                .iter()
                .map(|n| f32::from(u8::from(n.structure.last_layer() == layer)))
                .collect();
            if selector.iter().any(|&s| s > 0.0) {
                readout_layers.push((layer, constant(&selector, &[count as i64, 1, 1])?));
            }
        }
        Ok(NetworkGroup {
            variant,
            readout,
            count,
            widths,
            head_width,
            embedding,
            layers,
            head_weight: to_leaf(&values[head])?,
            head_mask: to_mask(&masks[head])?,
            head_bias: to_leaf(&values[head + 1])?,
            readout_layers,
            placements,
        })
    }

    /// Where the group computes.
    pub fn device(&self) -> tch::Device {
        self.embedding.device()
    }

    /// The group on `device`: parameters as trainable leaves there, masks and selectors beside
    /// them (itself when it is there already). Create the optimizer after moving.
    pub fn into_device(self, device: tch::Device) -> NnResult<Self> {
        use crate::nn::device::{leaf_on, on};
        if self.device() == device {
            return Ok(self);
        }
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                Ok(GroupLayer {
                    slot_count: l.slot_count,
                    inputs: l.inputs,
                    weight_ih: l
                        .weight_ih
                        .iter()
                        .map(|w| leaf_on(w, device))
                        .collect::<NnResult<_>>()?,
                    mask_ih: l
                        .mask_ih
                        .iter()
                        .map(|m| on(m, device))
                        .collect::<NnResult<_>>()?,
                    weight_hh: leaf_on(&l.weight_hh, device)?,
                    mask_hh: on(&l.mask_hh, device)?,
                    bias_ih: leaf_on(&l.bias_ih, device)?,
                    bias_hh: leaf_on(&l.bias_hh, device)?,
                    bias_mask: on(&l.bias_mask, device)?,
                })
            })
            .collect::<NnResult<Vec<_>>>()?;
        Ok(NetworkGroup {
            embedding: leaf_on(&self.embedding, device)?,
            layers,
            head_weight: leaf_on(&self.head_weight, device)?,
            head_mask: on(&self.head_mask, device)?,
            head_bias: leaf_on(&self.head_bias, device)?,
            readout_layers: self
                .readout_layers
                .into_iter()
                .map(|(layer, selector)| Ok((layer, on(&selector, device)?)))
                .collect::<NnResult<_>>()?,
            ..self
        })
    }

    /// Number of networks.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the group is empty (never: construction needs a network).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Padded width of each layer position.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Recurrent slots (blocks of the fused recurrences) of each layer position.
    pub fn slot_counts(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.slot_count).collect()
    }

    /// The group's parameters in a fixed order (shallow clones), named for the optimizer.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named = vec![("embedding".to_string(), self.embedding.shallow_clone())];
        for (index, layer) in self.layers.iter().enumerate() {
            for (pair, weight) in layer.weight_ih.iter().enumerate() {
                named.push((
                    format!("l{index}.input{pair}.weight_ih"),
                    weight.shallow_clone(),
                ));
            }
            named.push((
                format!("l{index}.weight_hh"),
                layer.weight_hh.shallow_clone(),
            ));
            named.push((format!("l{index}.bias_ih"), layer.bias_ih.shallow_clone()));
            named.push((format!("l{index}.bias_hh"), layer.bias_hh.shallow_clone()));
        }
        named.push(("head.weight".to_string(), self.head_weight.shallow_clone()));
        named.push(("head.bias".to_string(), self.head_bias.shallow_clone()));
        named
    }

    /// Member `member`'s view of group-layout tensors (parameters, gradients, …, in
    /// [`NetworkGroup::named_parameters`] order), in the reference layout of
    /// [`RandomNetwork::named_parameters`].
    pub fn member_tensors(&self, member: usize, group_tensors: &[Tensor]) -> NnResult<Vec<Tensor>> {
        let placements = self.placements.get(member).ok_or_else(|| {
            NnError::InvalidConfig(format!("no member {member} in a group of {}", self.count))
        })?;
        placements
            .iter()
            .map(|placement| {
                let source = group_tensors.get(placement.parameter).ok_or_else(|| {
                    NnError::InvalidConfig("group tensor list is too short".into())
                })?;
                let offsets =
                    Tensor::f_from_slice(&placement.offsets)?.f_to_device(source.device())?;
                Ok(source
                    .f_reshape([-1])?
                    .f_index_select(0, &offsets)?
                    .f_reshape(&placement.shape)?)
            })
            .collect()
    }

    /// Logits `[N, B, 2]` of one batch for every network.
    pub fn forward(&self, batch: &Batch) -> NnResult<Tensor> {
        let steps = batch.tokens.size()[0];
        let batch_size = batch.tokens.size()[1];
        let count = self.count as i64;
        // [N, T·B, W0] → [T, N, B, W0]
        let embedded = self
            .embedding
            .f_index_select(1, &batch.tokens.f_reshape([-1])?)?
            .f_reshape([count, steps, batch_size, -1])?
            .f_permute([1, 0, 2, 3])?;
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let mut projections: Vec<Option<Tensor>> =
                (0..layer.slot_count).map(|_| None).collect();
            for (((slot, source), weight), mask) in layer
                .inputs
                .iter()
                .zip(&layer.weight_ih)
                .zip(&layer.mask_ih)
            {
                let input = match source {
                    Some(s) => &outputs[*s],
                    None => &embedded,
                };
                // [T, N, B, in] · [N, in, G·W] → [T, N, B, G·W]; a network whose slot reads
                // another layer has zero weights here, so the sum below adds exact zeros.
                let weight_t = weight.f_mul(mask)?.f_transpose(-1, -2)?;
                let projection = input.f_matmul(&weight_t)?;
                let entry = &mut projections[*slot];
                *entry = Some(match entry.take() {
                    Some(previous) => previous.f_add(&projection)?,
                    None => projection,
                });
            }
            let projections = projections
                .into_iter()
                .map(|p| p.ok_or_else(|| NnError::InvalidConfig("a slot without input".into())))
                .collect::<NnResult<Vec<Tensor>>>()?;
            let bias_ih = layer.bias_ih.f_mul(&layer.bias_mask)?;
            let bias_hh = layer.bias_hh.f_mul(&layer.bias_mask)?;
            // [T, N, S, B, G·W] + [N, S, 1, G·W]
            let projected = Tensor::f_stack(&projections, 2)?.f_add(&projection_bias(
                self.variant,
                &bias_ih,
                &bias_hh,
            )?)?;
            let weight_hh = layer.weight_hh.f_mul(&layer.mask_hh)?;
            let hidden = run_projected(self.variant, &projected, &weight_hh, &bias_hh)?;
            // The block-diagonal recurrence's blocks add up to the layer's output.
            let output = if layer.slot_count == 1 {
                hidden.f_squeeze_dim(2)?
            } else {
                hidden.f_sum_dim_intlist(&[2i64][..], false, None::<Kind>)?
            };
            outputs.push(output);
        }
        let mut features: Option<Tensor> = None;
        let whole_group = self.readout_layers.len() == 1;
        for (layer, selector) in &self.readout_layers {
            let mut read = read_out(self.readout, &outputs[*layer], &batch.lengths)?;
            if !whole_group {
                // Zero the networks that end elsewhere (exact: x·1 = x, x·0 = 0, 0 + x = x).
                read = read.f_mul(selector)?;
            }
            let missing = (self.head_width - self.widths[*layer]) as i64;
            if missing > 0 {
                read = read.f_constant_pad_nd([0, missing])?;
            } else if missing < 0 {
                read = read.f_narrow(-1, 0, self.head_width as i64)?;
            }
            features = Some(match features {
                Some(previous) => previous.f_add(&read)?,
                None => read,
            });
        }
        let features =
            features.ok_or_else(|| NnError::InvalidConfig("a group without layers".into()))?;
        let head = self.head_weight.f_mul(&self.head_mask)?;
        Ok(features
            .f_matmul(&head.f_transpose(-1, -2)?)?
            .f_add(&self.head_bias)?)
    }
}

/// Writes a reference tensor's values (and optionally its mask) into group buffers at the given
/// flat offsets, and records the placement.
#[allow(clippy::too_many_arguments)]
fn place(
    values: &mut [Buffer],
    masks: &mut [Option<Buffer>],
    placements: &mut Vec<Placement>,
    parameter: usize,
    offsets: Vec<i64>,
    shape: Vec<i64>,
    reference: &[f32],
    mask: Option<&[f32]>,
) {
    for (index, &offset) in offsets.iter().enumerate() {
        values[parameter].values[offset as usize] = reference[index];
        if let (Some(mask), Some(buffer)) = (mask, masks[parameter].as_mut()) {
            buffer.values[offset as usize] = mask[index];
        }
    }
    placements.push(Placement {
        parameter,
        offsets,
        shape,
    });
}

fn tensor_values(tensor: &Tensor) -> NnResult<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        &tensor.f_detach()?.f_reshape([-1])?.f_to_kind(Kind::Float)?,
    )?)
}
