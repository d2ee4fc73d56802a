//! Reports drawn from the committed quick-profile tables of real sweeps: every figure is a PNG
//! that decodes at its size and is not blank, an SVG that parses at the same size, `report.md`
//! and `report.html` hold the verdicts and link the figures, and `report.pdf` (read back with
//! lopdf) holds the same tables and the figures as vectors.

use std::path::Path;

use report::{Error, Subject, write_report};

fn subject(experiment: &str) -> Subject {
    Subject {
        experiment: experiment.into(),
        title: format!("{experiment} title"),
        profile: "quick".into(),
        about: "the quick profile".into(),
        dataset: "cifar10".into(),
    }
}

/// Distinct colours in the image and the share of pixels that are not white.
fn ink(path: &Path) -> (usize, f64, (u32, u32)) {
    let img = image::open(path).unwrap().to_rgb8();
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let inked = colours.iter().filter(|c| **c != [255, 255, 255]).count();
    let share = inked as f64 / colours.len() as f64;
    colours.sort();
    colours.dedup();
    (colours.len(), share, img.dimensions())
}

#[test]
fn every_experiment_with_committed_results_gets_its_figures_and_report() {
    let results = testkit::repository().join("results");
    let expected: [(&str, &[&str]); 4] = [
        ("table6", &["curves", "depth-error"]),
        ("fig1", &["curves"]),
        ("fig7", &["curves", "layer-responses", "depth-error"]),
        ("ablation-skip", &["curves", "skip-span"]),
    ];
    for (experiment, stems) in expected {
        let out = tempfile::tempdir().unwrap();
        let written = write_report(&subject(experiment), &results, out.path()).unwrap();
        let names: Vec<String> = written
            .figures
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for stem in stems {
            for ext in ["png", "svg"] {
                let name = format!("{stem}.{ext}");
                assert!(
                    names.contains(&name),
                    "{experiment}: {name} not in {names:?}"
                );
            }
            let (colours, share, (w, h)) = ink(&out.path().join(format!("{stem}.png")));
            assert!(w >= 700 && h >= 500, "{experiment}/{stem}: {w}x{h}");
            // Axes, text and at least two series' colours; neither blank nor filled.
            assert!(colours > 8, "{experiment}/{stem}: {colours} colours");
            assert!(
                share > 0.01 && share < 0.5,
                "{experiment}/{stem}: {share} inked"
            );
            let svg = std::fs::read_to_string(out.path().join(format!("{stem}.svg"))).unwrap();
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(
                svg.contains("<text"),
                "{experiment}/{stem}: no text in the SVG"
            );
        }
        let md = std::fs::read_to_string(&written.markdown).unwrap();
        assert!(md.starts_with(&format!("# {experiment} title")), "{md}");
        assert!(md.contains("| claim") && md.contains("verdict"), "{md}");
        for stem in stems {
            assert!(md.contains(&format!("]({stem}.png)")), "{experiment}: {md}");
        }
        let html = std::fs::read_to_string(&written.html).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<table>").count(), 3, "{experiment}");
        for stem in stems {
            assert!(
                html.contains(&format!("src=\"{stem}.svg\"")),
                "{experiment}: {stem}"
            );
        }
        // The failed claims of these runs are in bold, as measured.
        let verdicts =
            std::fs::read_to_string(results.join(experiment).join("quick/verdicts.csv")).unwrap();
        assert_eq!(
            verdicts.contains(",failed,"),
            md.contains("**failed**"),
            "{experiment}"
        );
        assert_eq!(
            verdicts.contains(",failed,"),
            html.contains("<tr class=\"failed\">"),
            "{experiment}"
        );
    }
}

#[test]
fn curves_follow_the_paper_split_and_text() {
    let results = testkit::repository().join("results");
    let out = tempfile::tempdir().unwrap();
    write_report(&subject("table6"), &results, out.path()).unwrap();
    let svg = std::fs::read_to_string(out.path().join("curves.svg")).unwrap();
    for text in [
        "plain nets",
        "residual nets",
        "iter. (1e4)",
        "error (%)",
        "plain-56",
        "ResNet-20",
    ] {
        assert!(svg.contains(text), "`{text}` missing from curves.svg");
    }
    let out = tempfile::tempdir().unwrap();
    write_report(&subject("fig1"), &results, out.path()).unwrap();
    let svg = std::fs::read_to_string(out.path().join("curves.svg")).unwrap();
    assert!(svg.contains("training error") && svg.contains("test error"));
    assert!(!svg.contains("residual nets"));
}

#[test]
fn an_experiment_without_results_names_the_command_that_makes_them() {
    let out = tempfile::tempdir().unwrap();
    let err = write_report(&subject("fig6"), out.path(), out.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Experiments(e) if matches!(**e, experiments::Error::NoResults { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("suite reproduce fig6 --profile quick"),
        "{err}"
    );
}

/// The text lopdf finds on each page of `pdf`.
fn pdf_pages(pdf: &Path) -> (lopdf::Document, Vec<String>) {
    let doc = lopdf::Document::load(pdf).unwrap();
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    let text = pages
        .iter()
        .map(|p| {
            doc.extract_text(&[*p])
                .unwrap_or_else(|e| panic!("page {p}: {e}"))
        })
        .collect();
    (doc, text)
}

#[test]
fn the_pdf_holds_provenance_verdicts_tables_and_vector_figures() {
    let results = testkit::repository().join("results");
    let out = tempfile::tempdir().unwrap();
    let written = write_report(&subject("table6"), &results, out.path()).unwrap();
    assert_eq!(written.pdf, out.path().join("report.pdf"));
    let (doc, pages) = pdf_pages(&written.pdf);
    // Text pages first, then one page per figure (curves, depth-error).
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let all = pages.join("\n");
    // ResNet-56's committed test error, as the summary table prints it.
    let runs = std::fs::read_to_string(results.join("table6/quick/runs.csv")).unwrap();
    let header: Vec<&str> = runs.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let resnet56 = runs
        .lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|cells| cells[column("model")] == "resnet56")
        .unwrap();
    let resnet56_error = format!(
        "{:.2}",
        resnet56[column("final_test_error")].parse::<f64>().unwrap()
    );
    for text in [
        "table6 title",
        "Provenance",
        "command",
        "Verdicts",
        "resnet56-beats-resnet20",
        "failed",
        "Measured and the paper",
        "ResNet-56",
        &resnet56_error,
    ] {
        assert!(all.contains(text), "`{text}` not in the PDF's text:\n{all}");
    }
    let figure_pages = &pages[pages.len() - 2..];
    assert!(
        figure_pages[0].contains("curves.svg"),
        "{}",
        figure_pages[0]
    );
    assert!(
        figure_pages[1].contains("depth-error.svg"),
        "{}",
        figure_pages[1]
    );
    // The figures' own text (axis labels, legends) is text in the PDF, not pixels;
    // SVG text is placed glyph by glyph, so the extraction splits it into lines.
    let figure_text: String = figure_pages[0].split_whitespace().collect();
    assert!(
        figure_text.contains("iter.(1e4)") && figure_text.contains("ResNet-20"),
        "{figure_text}"
    );
    let mut fonts = Vec::new();
    for object in doc.objects.values() {
        let dict = match object {
            lopdf::Object::Stream(s) => &s.dict,
            lopdf::Object::Dictionary(d) => d,
            _ => continue,
        };
        assert!(
            dict.get(b"Subtype").and_then(|s| s.as_name()).ok() != Some(b"Image"),
            "a raster image in the PDF: figures must stay vectors"
        );
        if let Ok(name) = dict.get(b"BaseFont").and_then(|n| n.as_name()) {
            fonts.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    assert!(
        fonts.iter().any(|f| f.contains("NotoSans")),
        "the bundled font is embedded: {fonts:?}"
    );
    // Written twice, the document is the same bytes: committed reports do not churn.
    let again = tempfile::tempdir().unwrap();
    let second = write_report(&subject("table6"), &results, again.path()).unwrap();
    assert_eq!(
        std::fs::read(&written.pdf).unwrap(),
        std::fs::read(&second.pdf).unwrap()
    );
}

#[test]
fn every_svg_parses_with_its_declared_size() {
    let results = testkit::repository().join("results");
    let out = tempfile::tempdir().unwrap();
    let written = write_report(&subject("fig7"), &results, out.path()).unwrap();
    let svgs: Vec<_> = written
        .figures
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    assert_eq!(svgs.len(), 3, "{svgs:?}");
    for svg in svgs {
        let png = image::open(svg.with_extension("png")).unwrap();
        let text = std::fs::read_to_string(svg).unwrap();
        let tree = usvg::Tree::from_str(&text, &usvg::Options::default())
            .unwrap_or_else(|e| panic!("{}: {e}", svg.display()));
        // The same figure at the same size in both formats.
        assert_eq!(
            (tree.size().width() as u32, tree.size().height() as u32),
            (png.width(), png.height()),
            "{}",
            svg.display()
        );
        assert!(
            tree.root().children().len() > 10,
            "{}: almost empty",
            svg.display()
        );
    }
}
