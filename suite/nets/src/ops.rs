//! Tensor operations the nets need that candle 0.11 lacks, built from candle ops that have gradients
//! on every device.
//!
//! - [`subsample`]: `x[:, :, ::s, ::s]`, for option A shortcuts. candle has no strided slice.
//! - [`max_pool2d`]: max pooling with padding and kernel != stride (the ImageNet stem's 3x3/2, pad 1);
//!   candle's own takes no padding and has no backward when kernel != stride.
//!
//! Both are written with `narrow`, `reshape` and `maximum`, whose backward passes candle provides, so
//! they train on CPU and CUDA alike. Where several inputs of a pooling window tie for the maximum,
//! candle's `maximum` splits the gradient between them (PyTorch gives it all to the first); both are
//! valid subgradients, and after a ReLU ties happen at zero, where the ReLU's gradient is zero anyway.

use candle_core::{D, Result, Tensor};

/// Output length of a pooling or convolution window sweep.
pub fn out_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (input + 2 * padding - kernel) / stride + 1
}

/// `x[:, :, ::stride, ::stride]` of an (N, C, H, W) tensor, with a gradient. Output sides are
/// `ceil(H / stride)`, `ceil(W / stride)`, like a 1x1 conv with that stride.
pub fn subsample(xs: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(xs.clone());
    }
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
    // Pad up to a multiple of the stride, then view each side as (out, stride) and keep phase 0.
    let xs = xs
        .pad_with_zeros(2, 0, oh * stride - h)?
        .pad_with_zeros(3, 0, ow * stride - w)?;
    xs.reshape((n, c, oh, stride, ow, stride))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, oh, ow))
}

/// Pads the last two dimensions with `value` (`before` on top/left, `after_h` / `after_w` at the end).
fn pad_hw(
    xs: &Tensor,
    before: usize,
    after_h: usize,
    after_w: usize,
    value: f64,
) -> Result<Tensor> {
    let (n, c, _, w) = xs.dims4()?;
    let fill = |shape: (usize, usize, usize, usize)| -> Result<Tensor> {
        Tensor::full(value as f32, shape, xs.device())?.to_dtype(xs.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(fill((n, c, before, w))?);
    }
    parts.push(xs.clone());
    if after_h > 0 {
        parts.push(fill((n, c, after_h, w))?);
    }
    let xs = Tensor::cat(&parts, 2)?;
    let hp = xs.dim(2)?;
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(fill((n, c, hp, before))?);
    }
    parts.push(xs);
    if after_w > 0 {
        parts.push(fill((n, c, hp, after_w))?);
    }
    Tensor::cat(&parts, 3)
}

/// Max pooling over `kernel` x `kernel` windows with `stride` and implicit `-inf` padding, as PyTorch's
/// `max_pool2d(kernel, stride, padding)`. Trainable on every device.
pub fn max_pool2d(xs: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, h, w) = xs.dims4()?;
    if kernel == 0 || stride == 0 || 2 * padding > kernel || h + 2 * padding < kernel {
        candle_core::bail!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} do not fit input {:?}",
            xs.dims()
        );
    }
    let (oh, ow) = (
        out_size(h, kernel, stride, padding),
        out_size(w, kernel, stride, padding),
    );
    // Each window offset (i, j) reads rows i, i + stride, ...: a slice of length stride * out starting
    // at i, subsampled by the stride. Pad at the end so that every such slice fits.
    let need_h = kernel - 1 + stride * oh;
    let need_w = kernel - 1 + stride * ow;
    let padded = pad_hw(
        xs,
        padding,
        need_h - h - padding,
        need_w - w - padding,
        f64::NEG_INFINITY,
    )?;
    let mut out: Option<Tensor> = None;
    for i in 0..kernel {
        for j in 0..kernel {
            let window = padded
                .narrow(2, i, stride * oh)?
                .narrow(3, j, stride * ow)?;
            let window = subsample(&window, stride)?;
            out = Some(match out {
                None => window,
                Some(acc) => acc.maximum(&window)?,
            });
        }
    }
    Ok(out.expect("kernel >= 1"))
}

/// Mean over the spatial dimensions: (N, C, H, W) -> (N, C).
pub fn global_avg_pool(xs: &Tensor) -> Result<Tensor> {
    xs.mean(D::Minus1)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn arange(shape: (usize, usize, usize, usize)) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .reshape(shape)
            .unwrap()
    }

    /// A reference max pool written as loops over PyTorch's definition.
    fn naive_max_pool(
        x: &[f32],
        (n, c, h, w): (usize, usize, usize, usize),
        k: usize,
        s: usize,
        p: usize,
    ) -> Vec<f32> {
        let (oh, ow) = (out_size(h, k, s, p), out_size(w, k, s, p));
        let mut out = Vec::new();
        for b in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut m = f32::NEG_INFINITY;
                    for dy in 0..k {
                        for dx in 0..k {
                            let (y, xx) = (
                                (oy * s + dy) as isize - p as isize,
                                (ox * s + dx) as isize - p as isize,
                            );
                            if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                                m = m.max(x[b * h * w + y as usize * w + xx as usize]);
                            }
                        }
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    #[test]
    fn subsample_takes_every_other_row_and_column() {
        let x = arange((1, 1, 4, 5));
        let y = subsample(&x, 2).unwrap();
        assert_eq!(y.dims(), &[1, 1, 2, 3]);
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 2., 4., 10., 12., 14.]
        );
    }

    #[test]
    fn subsample_gradient_lands_on_the_kept_positions() {
        let x = Var::from_tensor(&arange((2, 3, 5, 4))).unwrap();
        let y = subsample(x.as_tensor(), 2).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (idx, v) in g.iter().enumerate() {
            let (row, col) = ((idx / 4) % 5, idx % 4);
            let kept = row % 2 == 0 && col % 2 == 0;
            assert_eq!(*v, if kept { 1.0 } else { 0.0 }, "index {idx}");
        }
    }

    #[test]
    fn max_pool_matches_the_definition_on_odd_and_even_sizes() {
        let dev = Device::Cpu;
        for (shape, k, s, p) in [
            ((2, 3, 8, 8), 3, 2, 1),
            ((1, 2, 7, 9), 3, 2, 1),
            ((3, 1, 5, 5), 2, 2, 0),
            ((1, 1, 6, 6), 3, 1, 1),
            ((1, 2, 112, 112), 3, 2, 1),
        ] {
            let n = shape.0 * shape.1 * shape.2 * shape.3;
            let x = Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
            let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(v.len(), n);
            let y = max_pool2d(&x, k, s, p).unwrap();
            assert_eq!(
                y.dims(),
                &[
                    shape.0,
                    shape.1,
                    out_size(shape.2, k, s, p),
                    out_size(shape.3, k, s, p)
                ]
            );
            assert_eq!(
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                naive_max_pool(&v, shape, k, s, p),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn max_pool_gradient_matches_finite_differences() {
        // Distinct values, so every window has a unique maximum and the function is smooth nearby.
        let dev = Device::Cpu;
        let shape = (1, 2, 7, 6);
        let n = 2 * 7 * 6;
        let base: Vec<f32> = (0..n).map(|i| ((i * 37) % n) as f32 * 0.1).collect();
        let weights = Tensor::randn(0f32, 1.0, (1, 2, 4, 3), &dev).unwrap();
        let loss = |x: &Tensor| -> Tensor {
            (max_pool2d(x, 3, 2, 1).unwrap() * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let x = Var::from_vec(base.clone(), shape, &dev).unwrap();
        let grads = loss(x.as_tensor()).backward().unwrap();
        let analytic = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let eps = 0.01f32;
        for i in 0..n {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let f = |v: Vec<f32>| {
                loss(&Tensor::from_vec(v, shape, &dev).unwrap())
                    .to_scalar::<f32>()
                    .unwrap()
            };
            let numeric = (f(plus) - f(minus)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 1e-3,
                "element {i}: numeric {numeric}, analytic {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn max_pool_rejects_windows_that_do_not_fit() {
        let x = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = max_pool2d(&x, 5, 2, 1).unwrap_err().to_string();
        assert!(err.contains("kernel 5"), "{err}");
    }
}
