//! How precisely the paper prints a number, from the number itself.
//!
//! The reference file stores numbers as printed (`1.8e9`, `0.27`, `19.4`), so the shortest decimal
//! form of each value shows its printed digits. Comparisons allow a stated number of units in the
//! last printed place.

/// One unit in the last significant digit of `x` as written in shortest decimal form: 1.8e9 -> 1e8,
/// 0.27 -> 0.01, 19.4 -> 0.1, 11.3e9 -> 1e8, 5 -> 1.
pub fn unit_in_last_place(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').expect("`{:e}` writes an exponent");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    let decimals = mantissa.split_once('.').map_or(0, |(_, frac)| frac.len()) as i32;
    10f64.powi(exponent - decimals)
}

/// Whether `measured` is within `units` units of the last printed place of `printed`.
pub fn within_printed_precision(measured: f64, printed: f64, units: f64) -> bool {
    // A relative epsilon absorbs the binary representation of the printed decimal.
    (measured - printed).abs() <= units * unit_in_last_place(printed) * (1.0 + 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_the_printed_digits() {
        for (x, unit) in [
            (1.8e9, 1e8),
            (11.3e9, 1e8),
            (0.27, 0.01),
            (19.4, 0.1),
            (1.7, 0.1),
            (5.0, 1.0),
            (3.57, 0.01),
        ] {
            let got = unit_in_last_place(x);
            assert!((got / unit - 1.0).abs() < 1e-12, "{x}: {got} vs {unit}");
        }
    }

    #[test]
    fn rounding_windows() {
        assert!(within_printed_precision(0.269722, 0.27, 0.5));
        assert!(!within_printed_precision(0.2649, 0.27, 0.5));
        assert!(within_printed_precision(3.858e9, 3.8e9, 1.0));
        assert!(!within_printed_precision(3.858e9, 3.8e9, 0.5));
        assert!(
            within_printed_precision(0.275, 0.27, 0.5),
            "the edge itself is inside"
        );
    }
}
