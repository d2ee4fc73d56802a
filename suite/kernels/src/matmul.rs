//! Row-major matrix products on the `gemm` crate, the engine candle's own matmul uses.

/// A read-only matrix view: element (i, j) is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// `dst (m x n, row-major) = [dst +] a (m x k) * b (k x n)`; `threads` > 1 lets gemm split the work.
/// `dst` is read only when `accumulate` is set (it must then be initialised; see `cpu::as_uninit`).
pub(crate) fn matmul(
    dst: &mut [std::mem::MaybeUninit<f32>],
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    accumulate: bool,
    threads: usize,
) {
    assert!(
        dst.len() >= m * n,
        "matmul: destination holds {} < {m}x{n}",
        dst.len()
    );
    assert!(m == 0 || k == 0 || a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs);
    assert!(k == 0 || n == 0 || b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element gemm addresses inside the three slices, and `dst`
    // is borrowed mutably so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::as_uninit;

    #[test]
    fn products_match_the_definition_for_every_operand_layout() {
        let (m, n, k) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let expect = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
        let mut dst = vec![0.0; m * n];
        matmul(
            as_uninit(&mut dst),
            (m, n, k),
            View::rows(&a, k),
            View::rows(&b, n),
            false,
            1,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(dst[i * n + j], expect(i, j));
            }
        }
        // (A^T)^T B with A stored transposed, accumulated onto the previous result.
        let at: Vec<f32> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
        matmul(
            as_uninit(&mut dst),
            (m, n, k),
            View::transposed(&at, m),
            View::rows(&b, n),
            true,
            2,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(dst[i * n + j], 2.0 * expect(i, j));
            }
        }
    }
}
