//! The official validation layout: flat `ILSVRC2012_val_*.JPEG` files labelled by the devkit's
//! ground-truth ids, mapped to wnids through its MATLAB `meta.mat`. The tests write level-5
//! MAT-files as MATLAB does (small elements, narrow storage types, compressed variables).

use std::io::Write;
use std::path::Path;

use datasets::imagenet::{Layout, Validation, imagenet1k_wnids};

/// A data element: tag, data, padding to 8 bytes.
fn element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(kind.to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out.resize(out.len().div_ceil(8) * 8, 0);
    out
}

/// A small data element (at most 4 bytes, packed into the tag's 8 bytes).
fn small(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() as u32) << 16 | kind).to_le_bytes().to_vec();
    out.extend(data);
    out.resize(8, 0);
    out
}

fn matrix(name: &str, class: u8, dims: &[i32], body: &[u8]) -> Vec<u8> {
    let mut m = element(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
    m.extend(element(
        5,
        &dims
            .iter()
            .flat_map(|d| d.to_le_bytes())
            .collect::<Vec<_>>(),
    ));
    m.extend(element(1, name.as_bytes()));
    m.extend(body);
    element(14, &m)
}

/// A double scalar stored, as MATLAB stores small integers, as uint16.
fn number(value: u16) -> Vec<u8> {
    matrix("", 6, &[1, 1], &small(4, &value.to_le_bytes()))
}

/// A one-row char array, stored as UTF-16.
fn text(value: &str) -> Vec<u8> {
    let chars: Vec<u8> = value.encode_utf16().flat_map(|c| c.to_le_bytes()).collect();
    matrix("", 4, &[1, value.len() as i32], &element(4, &chars))
}

/// `synsets`: a struct array with the devkit's first fields, one element per (id, wnid).
fn synsets(entries: &[(u16, &str)]) -> Vec<u8> {
    const LENGTH: usize = 16;
    let fields = ["ILSVRC2012_ID", "WNID", "num_children"];
    let mut names = Vec::new();
    for f in fields {
        let mut n = f.as_bytes().to_vec();
        n.resize(LENGTH, 0);
        names.extend(n);
    }
    let mut body = small(5, &(LENGTH as i32).to_le_bytes());
    body.extend(element(1, &names));
    for (id, wnid) in entries {
        body.extend(number(*id));
        body.extend(text(wnid));
        body.extend(number(u16::from(*id > 1000)));
    }
    matrix("synsets", 2, &[entries.len() as i32, 1], &body)
}

fn mat_file(variable: Vec<u8>, compressed: bool) -> Vec<u8> {
    let mut out = b"MATLAB 5.0 MAT-file, written by the resnet-repro tests".to_vec();
    out.resize(116, b' ');
    out.extend([0u8; 8]);
    out.extend(0x0100u16.to_le_bytes());
    out.extend(b"IM");
    if compressed {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&variable).unwrap();
        let data = z.finish().unwrap();
        out.extend(15u32.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
    } else {
        out.extend(variable);
    }
    out
}

/// Three official validation images and a devkit whose meta.mat maps ids 1 to 3 (and a non-leaf
/// synset) to wnids.
fn write_official(dir: &Path, compressed: bool, truth: &str) {
    let images = dir.join("ILSVRC2012_img_val");
    std::fs::create_dir_all(&images).unwrap();
    for i in 1..=3 {
        image::RgbImage::from_pixel(80, 60, image::Rgb([i * 40, 10, 10]))
            .save(images.join(format!("ILSVRC2012_val_{i:08}.JPEG")))
            .unwrap();
    }
    let data = dir.join("ILSVRC2012_devkit_t12/data");
    std::fs::create_dir_all(&data).unwrap();
    let meta = synsets(&[
        (1, "n01484850"),
        (2, "n01440764"),
        (3, "n01443537"),
        (1001, "n00001740"),
    ]);
    std::fs::write(data.join("meta.mat"), mat_file(meta, compressed)).unwrap();
    std::fs::write(data.join("ILSVRC2012_validation_ground_truth.txt"), truth).unwrap();
}

#[test]
fn the_devkit_labels_the_official_images_through_meta_mat() {
    let classes = imagenet1k_wnids();
    for compressed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_official(dir.path(), compressed, "2\n3\n1\n");
        let val = Validation::open(dir.path(), &classes).unwrap();
        assert!(
            matches!(val.layout, Layout::Devkit { .. }),
            "{:?}",
            val.layout
        );
        // Image 1 is id 2 (n01440764, class 0), image 2 id 3 (n01443537, 1), image 3 id 1
        // (n01484850, 2).
        let labels: Vec<usize> = val.samples.iter().map(|s| s.1).collect();
        assert_eq!(labels, vec![0, 1, 2], "compressed: {compressed}");
    }
}

#[test]
fn a_devkit_that_does_not_fit_says_where() {
    let classes = imagenet1k_wnids();
    let dir = tempfile::tempdir().unwrap();
    write_official(dir.path(), true, "2\n77\n1\n");
    let err = Validation::open(dir.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ground_truth.txt") && err.contains("line 2") && err.contains("77"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    write_official(dir.path(), false, "2\n3\n");
    let err = Validation::open(dir.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels 2 images") && err.contains("holds 3"),
        "{err}"
    );
    // The images without their devkit.
    std::fs::remove_dir_all(dir.path().join("ILSVRC2012_devkit_t12")).unwrap();
    let err = Validation::open(dir.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta.mat") && err.contains("devkit"), "{err}");
    // Not a MAT-file at all.
    let dir = tempfile::tempdir().unwrap();
    write_official(dir.path(), false, "1\n2\n3\n");
    std::fs::write(
        dir.path().join("ILSVRC2012_devkit_t12/data/meta.mat"),
        b"not a mat file",
    )
    .unwrap();
    let err = Validation::open(dir.path(), &classes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta.mat") && err.contains("header"), "{err}");
}
