//! The layers of a ResNet, each able to report its parameters and multiply-adds for a given input
//! shape, so counts come from the same module graph that runs.

use candle_core::{D, DType, Device, Result, Tensor, Var};
use candle_nn::init::Init;
use candle_nn::{ModuleT, VarBuilder};

use crate::init::CONV_INIT;
use crate::ops;

/// Shape of one example's activations: (channels, height, width).
pub type Chw = (usize, usize, usize);

/// Parameters and multiply-adds (the paper's "FLOPs") of one forward pass of one example.
///
/// Only convolutions and the fully-connected layer are counted as multiply-adds, as in the paper's
/// Table 1; batch norm, ReLU, pooling and shortcut additions are not. Parameters are the trainable
/// ones (conv and fc weights and biases, BN scale and shift), not BN running statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub params: u64,
    pub flops: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, rhs: Cost) {
        self.params += rhs.params;
        self.flops += rhs.flops;
    }
}

/// A layer that can walk an input shape through itself, adding up its cost.
pub trait Traced {
    fn trace(&self, input: Chw, cost: &mut Cost) -> Chw;
}

/// Which implementation of the training ops (conv, batch norm, ReLU) the layers run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The `kernels` crate's conv, fused batch norm + ReLU, one-pass ReLU and (in training) fused
    /// runs of basic blocks, wherever the tensors are f32 on the CPU. On CUDA (builds with the
    /// `cuda` feature) the conv's three passes and training-mode batch norm run through cuDNN and
    /// the other ops are candle's.
    #[default]
    Fast,
    /// candle's stock ops everywhere: the reference the fast kernels are checked against.
    Stock,
}

impl Kernels {
    pub(crate) fn fast_for(self, xs: &Tensor) -> bool {
        self == Self::Fast && xs.device().is_cpu() && xs.dtype() == DType::F32
    }

    /// Whether a conv on `xs` runs the fast kernels, which also cover CUDA.
    pub(crate) fn fast_conv_for(self, xs: &Tensor) -> bool {
        self == Self::Fast && ::kernels::conv2d_runs_on(xs.device()) && xs.dtype() == DType::F32
    }

    /// Whether training-mode batch norm on `xs` runs cuDNN's (a CUDA device).
    fn cudnn_batch_norm_for(self, xs: &Tensor) -> bool {
        self == Self::Fast
            && ::kernels::batch_norm_cuda_runs_on(xs.device())
            && xs.dtype() == DType::F32
    }
}

impl std::str::FromStr for Kernels {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fast" => Ok(Self::Fast),
            "stock" => Ok(Self::Stock),
            _ => Err(format!("unknown kernels `{s}`: expected `fast` or `stock`")),
        }
    }
}

impl std::fmt::Display for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fast => "fast",
            Self::Stock => "stock",
        })
    }
}

/// `max(xs, 0)` with the chosen kernels.
pub fn relu(xs: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(xs) {
        ::kernels::relu(xs)
    } else {
        xs.relu()
    }
}

/// `max(a + b, 0)` with the chosen kernels: a residual block's output.
pub fn add_relu(a: &Tensor, b: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(a) && a.dims() == b.dims() {
        ::kernels::add_relu(a, b)
    } else {
        (a + b)?.relu()
    }
}

/// Max pooling with the chosen kernels (the stock path splits a tied window's gradient between its
/// maxima; the fast one gives it to the first, as PyTorch).
pub fn max_pool2d(
    xs: &Tensor,
    (kernel, stride, padding): (usize, usize, usize),
    kernels: Kernels,
) -> Result<Tensor> {
    if kernels.fast_for(xs) {
        ::kernels::max_pool2d(xs, kernel, stride, padding)
    } else {
        ops::max_pool2d(xs, kernel, stride, padding)
    }
}

/// Option A's shortcut where the shape changes: `xs[:, :, ::stride, ::stride]` and `extra` zero
/// channels, with the chosen kernels.
pub fn subsample_pad(xs: &Tensor, stride: usize, extra: usize, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(xs) {
        ::kernels::subsample_pad(xs, stride, extra)
    } else {
        ops::subsample(xs, stride)?.pad_with_zeros(1, 0, extra)
    }
}

/// A 2-D convolution without bias (every conv in a ResNet is followed by BN).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    stride: usize,
    padding: usize,
    pub kernels: Kernels,
}

impl Conv2d {
    /// `c_in -> c_out` with a square `kernel`, "same" padding for odd kernels, He init (fan-out).
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((c_out, c_in, kernel, kernel), "weight", CONV_INIT)?;
        Ok(Self::from_weight(weight, stride, kernel / 2))
    }

    /// Wraps an existing (c_out, c_in, k, k) weight.
    pub fn from_weight(weight: Tensor, stride: usize, padding: usize) -> Self {
        Self {
            weight,
            stride,
            padding,
            kernels: Kernels::default(),
        }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The same conv on a view of its weight outside the autograd graph (see
    /// [`crate::ResNet::detached`]).
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            ..self.clone()
        }
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    fn kernel(&self) -> usize {
        self.weight.dims()[2]
    }
}

impl candle_nn::Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if self.kernels.fast_conv_for(xs) {
            ::kernels::conv2d(xs, &self.weight, self.padding, self.stride)
        } else {
            xs.conv2d(&self.weight, self.padding, self.stride, 1, 1)
        }
    }
}

impl Traced for Conv2d {
    fn trace(&self, (c, h, w): Chw, cost: &mut Cost) -> Chw {
        let dims = self.weight.dims();
        let (c_out, c_in, k) = (dims[0], dims[1], self.kernel());
        debug_assert_eq!(c, c_in, "conv input channels");
        let (oh, ow) = (
            ops::out_size(h, k, self.stride, self.padding),
            ops::out_size(w, k, self.stride, self.padding),
        );
        let params = (c_out * c_in * k * k) as u64;
        cost.params += params;
        cost.flops += params * (oh * ow) as u64;
        (c_out, oh, ow)
    }
}

/// Batch normalisation over (N, H, W) per channel, as PyTorch's `BatchNorm2d` (eps 1e-5, momentum 0.1).
///
/// Training mode normalises with the batch statistics (biased variance) and updates the running
/// statistics with the unbiased variance; evaluation mode uses the running statistics. The running
/// statistics live in the `VarMap` (saved with the weights) and are updated in place, detached from
/// the graph.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
    pub kernels: Kernels,
}

impl BatchNorm {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps: Self::EPS,
            momentum: Self::MOMENTUM,
            kernels: Kernels::default(),
        })
    }

    /// The same norm on views of its scale and shift outside the autograd graph; the running
    /// statistics are the same variables.
    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.detach(),
            ..self.clone()
        }
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The per-channel scale (`weight`) and shift (`bias`).
    pub fn scale_shift(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    fn per_channel(t: &Tensor) -> Result<Tensor> {
        t.reshape((1, (), 1, 1))
    }

    /// Folds a batch statistic into a running one: `running = (1 - m) * running + m * batch`.
    fn update_running(&self, running: &Var, batch: &Tensor) -> Result<()> {
        let m = self.momentum;
        running.set(&((running.as_tensor() * (1.0 - m))? + (batch * m)?)?)
    }

    /// Training mode, followed by a ReLU when `relu` is set (fused into one op by the fast kernels).
    pub fn forward_train(&self, xs: &Tensor, relu: bool) -> Result<Tensor> {
        if self.kernels.cudnn_batch_norm_for(xs) {
            let (ys, mean, var) =
                ::kernels::batch_norm_train_cuda(xs, &self.weight, &self.bias, self.eps)?;
            self.update_running(&self.running_mean, &mean)?;
            self.update_running(&self.running_var, &var)?;
            return if relu { ys.relu() } else { Ok(ys) };
        }
        if !self.kernels.fast_for(xs) {
            let ys = self.forward_train_stock(xs)?;
            return if relu { ys.relu() } else { Ok(ys) };
        }
        let (ys, stats) =
            ::kernels::batch_norm_train(xs, &self.weight, &self.bias, self.eps, relu)?;
        self.update_running_from(&stats, xs.device())?;
        Ok(ys)
    }

    /// Training mode, plus `shortcut`, then a ReLU: a residual block's tail, one op with the fast
    /// kernels.
    pub fn forward_train_add_relu(&self, xs: &Tensor, shortcut: &Tensor) -> Result<Tensor> {
        if !self.kernels.fast_for(xs) || xs.dims() != shortcut.dims() {
            return (self.forward_train(xs, false)? + shortcut)?.relu();
        }
        let (ys, stats) =
            ::kernels::batch_norm_add_relu(xs, &self.weight, &self.bias, shortcut, self.eps)?;
        self.update_running_from(&stats, xs.device())?;
        Ok(ys)
    }

    /// Folds the statistics a fast kernel computed over a batch into the running ones.
    pub(crate) fn update_running_from(
        &self,
        stats: &::kernels::BatchStats,
        device: &Device,
    ) -> Result<()> {
        let channels = stats.mean.len();
        let mean = Tensor::from_vec(stats.mean.clone(), channels, device)?;
        let var = Tensor::from_vec(stats.unbiased_var(), channels, device)?;
        self.update_running(&self.running_mean, &mean)?;
        self.update_running(&self.running_var, &var)
    }

    fn forward_train_stock(&self, xs: &Tensor) -> Result<Tensor> {
        let (n, _, h, w) = xs.dims4()?;
        let count = (n * h * w) as f64;
        if count < 2.0 {
            candle_core::bail!(
                "batch norm in training mode needs more than one value per channel, got input {:?}",
                xs.dims()
            );
        }
        let mean = xs.mean_keepdim((0, 2, 3))?;
        let centered = xs.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let unbiased = (var.detach().flatten_all()? * (count / (count - 1.0)))?;
        self.update_running(&self.running_mean, &mean.detach().flatten_all()?)?;
        self.update_running(&self.running_var, &unbiased)?;
        let scale = (var + self.eps)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&Self::per_channel(&self.weight)?)?;
        centered
            .broadcast_mul(&scale)?
            .broadcast_add(&Self::per_channel(&self.bias)?)
    }

    fn forward_eval(&self, xs: &Tensor) -> Result<Tensor> {
        let inv_std = (self.running_var.as_detached_tensor() + self.eps)?
            .sqrt()?
            .recip()?;
        let scale = (inv_std * &self.weight)?;
        let shift = (&self.bias - (self.running_mean.as_detached_tensor() * &scale)?)?;
        xs.broadcast_mul(&Self::per_channel(&scale)?)?
            .broadcast_add(&Self::per_channel(&shift)?)
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(xs, false)
        } else {
            self.forward_eval(xs)
        }
    }
}

impl Traced for BatchNorm {
    fn trace(&self, input: Chw, cost: &mut Cost) -> Chw {
        cost.params += 2 * self.weight.elem_count() as u64;
        input
    }
}

/// A conv followed by its batch norm: the unit every ResNet layer is made of. The names follow
/// torchvision: the conv's weight under `conv_name`, the BN under `bn_name`, both in the scope of `vb`.
#[derive(Debug, Clone)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    /// The BN's full weight prefix, e.g. `layer2.0.bn1`: names the unit's response in taps.
    pub name: String,
}

impl ConvBn {
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        (conv_name, bn_name): (&str, &str),
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(c_in, c_out, kernel, stride, vb.pp(conv_name))?,
            bn: BatchNorm::new(c_out, vb.pp(bn_name))?,
            name: vb.pp(bn_name).prefix(),
        })
    }

    pub fn kernel(&self) -> usize {
        self.conv.kernel()
    }

    pub fn detached(&self) -> Self {
        Self {
            conv: self.conv.detached(),
            bn: self.bn.detached(),
            name: self.name.clone(),
        }
    }

    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.conv.kernels = kernels;
        self.bn.kernels = kernels;
    }

    /// Training mode: conv, BN, plus `shortcut`, then a ReLU (a residual block's last unit).
    pub fn forward_train_add_relu(&self, xs: &Tensor, shortcut: &Tensor) -> Result<Tensor> {
        let ys = xs.apply(&self.conv)?;
        self.bn.forward_train_add_relu(&ys, shortcut)
    }

    /// Conv, BN, and a ReLU when `relu` is set.
    pub fn forward_act(&self, xs: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let ys = xs.apply(&self.conv)?;
        if train {
            self.bn.forward_train(&ys, relu)
        } else {
            let ys = self.bn.forward_t(&ys, false)?;
            if relu {
                self::relu(&ys, self.bn.kernels)
            } else {
                Ok(ys)
            }
        }
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(xs, train, false)
    }
}

impl Traced for ConvBn {
    fn trace(&self, input: Chw, cost: &mut Cost) -> Chw {
        let out = self.conv.trace(input, cost);
        self.bn.trace(out, cost)
    }
}

/// Global average pooling followed by the fully-connected classifier.
#[derive(Debug, Clone)]
pub struct Head {
    weight: Tensor,
    bias: Tensor,
}

impl Head {
    /// torchvision's `nn.Linear` default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both tensors.
    pub fn new(c_in: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (c_in as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            weight: vb.get_with_hints((classes, c_in), "weight", init)?,
            bias: vb.get_with_hints(classes, "bias", init)?,
        })
    }

    pub fn detached(&self) -> Self {
        Self {
            weight: self.weight.detach(),
            bias: self.bias.detach(),
        }
    }
}

impl candle_nn::Module for Head {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        ops::global_avg_pool(xs)?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)
    }
}

impl Traced for Head {
    fn trace(&self, (c, _, _): Chw, cost: &mut Cost) -> Chw {
        let classes = self.weight.dim(D::Minus2).expect("fc weight is 2-D");
        let params = (classes * c) as u64;
        cost.params += params + classes as u64;
        cost.flops += params;
        (classes, 1, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded_var_builder;
    use candle_core::{DType, Device};
    use candle_nn::{Module, VarMap};

    #[test]
    fn conv_cost_is_counted_by_hand() {
        // A 3x3 conv from 16 to 32 channels with stride 2 on a 32x32 input: output 16x16;
        // weights 32*16*3*3 = 4608; multiply-adds 4608 per output position, 256 positions.
        let vars = VarMap::new();
        let conv = Conv2d::new(16, 32, 3, 2, seeded_var_builder(&vars, 0, &Device::Cpu)).unwrap();
        let mut cost = Cost::default();
        assert_eq!(conv.trace((16, 32, 32), &mut cost), (32, 16, 16));
        assert_eq!(
            cost,
            Cost {
                params: 4608,
                flops: 4608 * 256
            }
        );
        // The shape the trace predicts is the shape the forward pass produces.
        let x = Tensor::zeros((1, 16, 32, 32), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(conv.forward(&x).unwrap().dims(), &[1, 32, 16, 16]);
    }

    #[test]
    fn batch_norm_training_normalises_and_updates_running_statistics() {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let bn = BatchNorm::new(3, seeded_var_builder(&vars, 0, &dev)).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 3, 5, 5), &dev)
            .unwrap()
            .affine(2.0, 3.0)
            .unwrap();
        let y = bn.forward_t(&x, true).unwrap();
        let mean = y
            .mean_keepdim((0, 2, 3))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let var = y
            .sqr()
            .unwrap()
            .mean_keepdim((0, 2, 3))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for c in 0..3 {
            assert!(
                mean[c].abs() < 1e-5 && (var[c] - 1.0).abs() < 1e-3,
                "channel {c}: {} {}",
                mean[c],
                var[c]
            );
        }
        // running = 0.9 * running + 0.1 * batch statistic (unbiased variance), per channel.
        let xs = x
            .transpose(0, 1)
            .unwrap()
            .flatten_from(1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let rm = bn.running_mean().to_vec1::<f32>().unwrap();
        let rv = bn.running_var().to_vec1::<f32>().unwrap();
        for c in 0..3 {
            let n = xs[c].len() as f64;
            let m = xs[c].iter().map(|&v| v as f64).sum::<f64>() / n;
            let v = xs[c].iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
            assert!((rm[c] as f64 - 0.1 * m).abs() < 1e-4, "mean {c}");
            assert!((rv[c] as f64 - (0.9 + 0.1 * v)).abs() < 1e-4, "var {c}");
        }
        // Evaluation mode uses the running statistics: y = (x - rm) / sqrt(rv + eps).
        let y = bn.forward_t(&x, false).unwrap();
        let expect = x
            .broadcast_sub(&bn.running_mean().reshape((1, 3, 1, 1)).unwrap())
            .unwrap()
            .broadcast_div(
                &(bn.running_var() + 1e-5)
                    .unwrap()
                    .sqrt()
                    .unwrap()
                    .reshape((1, 3, 1, 1))
                    .unwrap(),
            )
            .unwrap();
        let diff = y
            .sub(&expect)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn running_statistics_stay_out_of_the_graph() {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let bn = BatchNorm::new(2, seeded_var_builder(&vars, 0, &dev)).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 2, 2, 2), &dev).unwrap()).unwrap();
        let loss = bn
            .forward_t(x.as_tensor(), true)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        assert!(grads.get(bn.running_mean()).is_none());
        assert!(grads.get(bn.running_var()).is_none());
        assert!(grads.get(&x).is_some());
    }
}
