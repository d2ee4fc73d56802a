//! Plain-text renderings of tables for terminals and Markdown reports.

/// A Markdown table with columns padded to a common width, so it also reads well as plain text.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([headers[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..headers.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.to_vec());
    out += &line(widths.iter().map(|_| "").collect::<Vec<_>>()).replace(' ', "-");
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// 11689512 -> "11,689,512".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// 0.0123 -> "+1.23%".
pub fn percent(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// `mean ± sd` to two decimals, or the mean alone where one seed leaves no spread (`sd` NaN).
pub fn mean_sd(mean: f64, sd: f64) -> String {
    if sd.is_finite() {
        format!("{mean:.2} ± {sd:.2}")
    } else {
        format!("{mean:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_numbers() {
        assert_eq!(thousands(11_689_512), "11,689,512");
        assert_eq!(thousands(512), "512");
        assert_eq!(percent(-0.00101), "-0.10%");
        let t = markdown_table(&["a", "long"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "| a   | long |\n|-----|------|\n| xyz | 1    |\n");
    }
}
