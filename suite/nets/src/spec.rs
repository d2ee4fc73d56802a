//! Model names and what they mean.
//!
//! Grammar (case-insensitive):
//!
//! ```text
//! name     = kind depth [ "-" option ] [ "-v1.5" ]
//! kind     = "resnet" | "plain"
//! depth    = 18 | 34 | 50 | 101 | 152        ImageNet family (Table 1)
//!          | 6n+2 for n >= 1                  CIFAR family (§4.2: 20, 32, 44, 56, 110, 1202, ...)
//! option   = "a" | "b" | "c"                  shortcut option (§3.3); residual nets only
//!          | "k" units                        CIFAR residual nets whose shortcuts skip `units`
//!                                             3x3 convs (1, 2 or 3; the paper's is 2); the depth
//!                                             is then 3*m*units + 2 for m units per stage
//! ```
//!
//! `resnet20-k1`, `resnet20` and `resnet20-k3` have the same depth, widths and nearly the same
//! FLOPs; they differ in how often a shortcut joins (18, 9 and 6 shortcuts). They are the nets of
//! the skip-frequency ablation, an experiment of this suite's own: the paper fixes the unit at two
//! layers without testing other spans.
//!
//! The ImageNet depths win where a depth fits both families (50 and 152 are also 6n+2). Defaults follow
//! the paper: option A on CIFAR (§4.2), option B on ImageNet (Table 3/4). `-v1.5` moves a bottleneck
//! block's stride from the first 1x1 conv (the paper's models) to the 3x3 conv (torchvision's models):
//! the parameter count is unchanged, the FLOPs grow because the 1x1 conv then runs at full resolution.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Depths of the ImageNet family with their block kind and blocks per stage (Table 1).
pub const IMAGENET_DEPTHS: [(usize, BlockKind, [usize; 4]); 5] = [
    (18, BlockKind::Basic, [2, 2, 2, 2]),
    (34, BlockKind::Basic, [3, 4, 6, 3]),
    (50, BlockKind::Bottleneck, [3, 4, 6, 3]),
    (101, BlockKind::Bottleneck, [3, 4, 23, 3]),
    (152, BlockKind::Bottleneck, [3, 8, 36, 3]),
];

/// The CIFAR depths the paper trains (§4.2, Table 6).
pub const CIFAR_DEPTHS: [usize; 6] = [20, 32, 44, 56, 110, 1202];

/// Output widths of the ImageNet stages (Table 1) and the CIFAR stages (§4.2).
pub const IMAGENET_WIDTHS: [usize; 4] = [64, 128, 256, 512];
pub const CIFAR_WIDTHS: [usize; 3] = [16, 32, 64];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Two 3x3 convs (Fig. 5 left).
    Basic,
    /// 1x1, 3x3, 1x1 with expansion 4 (Fig. 5 right).
    Bottleneck,
}

impl BlockKind {
    /// Ratio of a block's output width to its inner width.
    pub fn expansion(self) -> usize {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

/// How a residual block's shortcut is built (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shortcut {
    /// Identity; where the shape changes, subsample by the stride and zero-pad the new channels.
    A,
    /// 1x1 projection + BN only where the shape changes; identity elsewhere.
    B,
    /// 1x1 projection + BN on every shortcut.
    C,
}

impl Shortcut {
    pub fn letter(self) -> char {
        match self {
            Shortcut::A => 'a',
            Shortcut::B => 'b',
            Shortcut::C => 'c',
        }
    }
}

/// Which conv of a bottleneck block carries the stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BottleneckStride {
    /// The first 1x1 conv, as in the paper's (Caffe) models.
    FirstConv,
    /// The 3x3 conv, as torchvision's models ("ResNet v1.5").
    Conv3x3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// 3x3 conv stem, three stages of `n` residual units of `convs` 3x3 convs each at 16, 32, 64
    /// filters; depth `3 * n * convs + 2` (6n+2 for the paper's two-conv units).
    Cifar { n: usize, convs: usize },
    /// 7x7/2 conv + 3x3/2 max pool stem, four stages (Table 1).
    ImageNet { depth: usize },
}

/// Everything that decides a network's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub family: Family,
    /// `false` for the plain nets: the same layers without shortcuts.
    pub residual: bool,
    /// Meaningful for residual nets only; plain nets carry the family default.
    pub shortcut: Shortcut,
    pub bottleneck_stride: BottleneckStride,
    pub num_classes: usize,
}

impl ModelSpec {
    /// Residual CIFAR net of depth 6n+2 with option A, as in §4.2.
    pub fn cifar(depth: usize) -> Result<Self, Error> {
        format!("resnet{depth}").parse()
    }

    pub fn depth(&self) -> usize {
        match self.family {
            Family::Cifar { n, convs } => 3 * n * convs + 2,
            Family::ImageNet { depth } => depth,
        }
    }

    pub fn block_kind(&self) -> BlockKind {
        match self.family {
            Family::Cifar { .. } => BlockKind::Basic,
            Family::ImageNet { depth } => imagenet_row(depth).1,
        }
    }

    /// (output width of the stage's blocks before expansion, number of blocks) for each stage.
    pub fn stages(&self) -> Vec<(usize, usize)> {
        match self.family {
            Family::Cifar { n, .. } => CIFAR_WIDTHS.iter().map(|&w| (w, n)).collect(),
            Family::ImageNet { depth } => IMAGENET_WIDTHS
                .iter()
                .zip(imagenet_row(depth).2)
                .map(|(&w, b)| (w, b))
                .collect(),
        }
    }

    /// The input side the family is defined for (32 for CIFAR, 224 for ImageNet).
    pub fn default_input_size(&self) -> usize {
        match self.family {
            Family::Cifar { .. } => 32,
            Family::ImageNet { .. } => 224,
        }
    }

    /// 3x3 convs a shortcut skips in a CIFAR net's unit (the paper's 2); `None` for ImageNet nets.
    pub fn convs_per_unit(&self) -> Option<usize> {
        match self.family {
            Family::Cifar { convs, .. } => Some(convs),
            Family::ImageNet { .. } => None,
        }
    }

    pub fn is_cifar(&self) -> bool {
        matches!(self.family, Family::Cifar { .. })
    }

    /// The same net with another number of output classes.
    pub fn with_num_classes(self, num_classes: usize) -> Self {
        Self {
            num_classes,
            ..self
        }
    }

    /// `resnet{depth}-k{units}`: a CIFAR residual net whose shortcuts skip `units` 3x3 convs.
    fn cifar_units(residual: bool, depth: usize, units: &str) -> Result<Self, String> {
        if !residual {
            return Err("plain nets have no shortcuts, so no `-k` option".into());
        }
        let convs: usize = match units.parse() {
            Ok(k @ 1..=3) => k,
            _ => return Err(format!("`k{units}` is not a unit span (k1, k2 or k3)")),
        };
        if IMAGENET_DEPTHS.iter().any(|row| row.0 == depth) {
            return Err(format!(
                "depth {depth} names an ImageNet net; `-k` applies to CIFAR nets"
            ));
        }
        let per_stage = depth
            .checked_sub(2)
            .filter(|d| *d > 0 && d % (3 * convs) == 0);
        let Some(layers) = per_stage else {
            return Err(format!(
                "depth {depth} is not 3*m*{convs}+2 for whole m, as units of {convs} conv(s) need"
            ));
        };
        let family = Family::Cifar {
            n: layers / (3 * convs),
            convs,
        };
        Ok(Self {
            family,
            residual,
            shortcut: Shortcut::A,
            bottleneck_stride: BottleneckStride::FirstConv,
            num_classes: 10,
        })
    }

    fn default_shortcut(family: Family) -> Shortcut {
        match family {
            Family::Cifar { .. } => Shortcut::A,
            Family::ImageNet { .. } => Shortcut::B,
        }
    }
}

fn imagenet_row(depth: usize) -> (usize, BlockKind, [usize; 4]) {
    *IMAGENET_DEPTHS
        .iter()
        .find(|row| row.0 == depth)
        .expect("ImageNet depth validated at construction")
}

impl FromStr for ModelSpec {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::UnknownModel {
            name: name.to_string(),
            reason,
        };
        let lower = name.to_ascii_lowercase();
        let (residual, rest) = if let Some(rest) = lower.strip_prefix("resnet") {
            (true, rest)
        } else if let Some(rest) = lower.strip_prefix("plain") {
            (false, rest)
        } else {
            return Err(bad(
                "expected a name starting with `resnet` or `plain`".into()
            ));
        };
        let (rest, v15) = match rest.strip_suffix("-v1.5") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (depth_text, option) = match rest.split_once('-') {
            Some((d, o)) => (d, Some(o)),
            None => (rest, None),
        };
        let depth: usize = depth_text
            .parse()
            .map_err(|_| bad(format!("`{depth_text}` is not a depth")))?;
        if let Some(units) = option.and_then(|o| o.strip_prefix('k')) {
            return Self::cifar_units(residual, depth, units).map_err(bad);
        }
        let family = if IMAGENET_DEPTHS.iter().any(|row| row.0 == depth) {
            Family::ImageNet { depth }
        } else if depth >= 8 && (depth - 2).is_multiple_of(6) {
            Family::Cifar {
                n: (depth - 2) / 6,
                convs: 2,
            }
        } else {
            return Err(bad(format!(
                "depth {depth} is neither an ImageNet depth (18, 34, 50, 101, 152) nor 6n+2 (20, 32, 44, 56, 110, 1202, ...)"
            )));
        };
        let shortcut = match option {
            None => ModelSpec::default_shortcut(family),
            Some(_) if !residual => {
                return Err(bad(
                    "plain nets have no shortcuts, so no shortcut option".into()
                ));
            }
            Some("a") => Shortcut::A,
            Some("b") => Shortcut::B,
            Some("c") => Shortcut::C,
            Some(other) => {
                return Err(bad(format!(
                    "`{other}` is not an option (a, b or c for the shortcut, k1, k2 or k3 for the convs a CIFAR shortcut skips)"
                )));
            }
        };
        let bottleneck_stride = if v15 {
            if !matches!(family, Family::ImageNet { depth } if imagenet_row(depth).1 == BlockKind::Bottleneck)
            {
                return Err(bad(
                    "`-v1.5` applies to bottleneck nets only (50, 101, 152)".into(),
                ));
            }
            BottleneckStride::Conv3x3
        } else {
            BottleneckStride::FirstConv
        };
        let num_classes = match family {
            Family::Cifar { .. } => 10,
            Family::ImageNet { .. } => 1000,
        };
        Ok(ModelSpec {
            family,
            residual,
            shortcut,
            bottleneck_stride,
            num_classes,
        })
    }
}

impl fmt::Display for ModelSpec {
    /// The canonical name: the option appears only where it differs from the family default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.residual { "resnet" } else { "plain" };
        write!(f, "{kind}{}", self.depth())?;
        if self.residual && self.shortcut != ModelSpec::default_shortcut(self.family) {
            write!(f, "-{}", self.shortcut.letter())?;
        }
        if let Family::Cifar { convs, .. } = self.family
            && convs != 2
        {
            write!(f, "-k{convs}")?;
        }
        if self.bottleneck_stride == BottleneckStride::Conv3x3 {
            write!(f, "-v1.5")?;
        }
        Ok(())
    }
}

/// Every named model the suite knows, in a stable order: the paper's CIFAR nets, then ImageNet.
pub fn all_models() -> Vec<ModelSpec> {
    let mut names = Vec::new();
    for depth in CIFAR_DEPTHS {
        names.push(format!("plain{depth}"));
        names.push(format!("resnet{depth}"));
        names.push(format!("resnet{depth}-b"));
    }
    // The skip-frequency ablation's nets (units of 1 and 3 convs at the depths that allow both).
    for depth in [20, 56, 110] {
        names.push(format!("resnet{depth}-k1"));
        names.push(format!("resnet{depth}-k3"));
    }
    for (depth, kind, _) in IMAGENET_DEPTHS {
        names.push(format!("plain{depth}"));
        for option in ["a", "b", "c"] {
            names.push(format!("resnet{depth}-{option}"));
        }
        if kind == BlockKind::Bottleneck {
            names.push(format!("resnet{depth}-v1.5"));
        }
    }
    names
        .iter()
        .map(|n| n.parse().expect("built-in names parse"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_to_canonical_form() {
        for (name, canonical) in [
            ("resnet20", "resnet20"),
            ("ResNet20-A", "resnet20"),
            ("resnet20-b", "resnet20-b"),
            ("plain56", "plain56"),
            ("resnet34-a", "resnet34-a"),
            ("resnet34-b", "resnet34"),
            ("resnet34-c", "resnet34-c"),
            ("resnet50-v1.5", "resnet50-v1.5"),
            ("resnet1202", "resnet1202"),
            ("resnet8", "resnet8"),
            ("resnet20-k1", "resnet20-k1"),
            ("resnet20-k2", "resnet20"),
            ("ResNet56-K3", "resnet56-k3"),
        ] {
            let spec: ModelSpec = name.parse().unwrap();
            assert_eq!(spec.to_string(), canonical, "{name}");
            assert_eq!(canonical.parse::<ModelSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn families_and_defaults_follow_the_paper() {
        let r20: ModelSpec = "resnet20".parse().unwrap();
        assert_eq!(r20.family, Family::Cifar { n: 3, convs: 2 });
        assert_eq!(r20.shortcut, Shortcut::A);
        assert_eq!(r20.num_classes, 10);
        let r50: ModelSpec = "resnet50".parse().unwrap();
        assert_eq!(r50.family, Family::ImageNet { depth: 50 });
        assert_eq!(r50.shortcut, Shortcut::B);
        assert_eq!(r50.block_kind(), BlockKind::Bottleneck);
        assert_eq!(r50.bottleneck_stride, BottleneckStride::FirstConv);
        assert_eq!(r50.stages(), vec![(64, 3), (128, 4), (256, 6), (512, 3)]);
        assert_eq!(
            ModelSpec::cifar(110).unwrap().stages(),
            vec![(16, 18), (32, 18), (64, 18)]
        );
    }

    #[test]
    fn bad_names_say_why() {
        for (name, needle) in [
            ("resnet21", "6n+2"),
            ("vgg16", "starting with"),
            ("plain20-b", "plain nets"),
            ("resnet34-d", "not an option"),
            ("resnet34-v1.5", "bottleneck"),
            ("resnetxx", "not a depth"),
            ("resnet32-k3", "3*m*3+2"),
            ("resnet20-k4", "unit span"),
            ("plain20-k3", "plain nets"),
        ] {
            let err = name.parse::<ModelSpec>().unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
        }
    }

    #[test]
    fn units_of_k_keep_the_depth_and_change_the_shortcuts() {
        for (name, n, convs) in [
            ("resnet20-k1", 6, 1),
            ("resnet20-k3", 2, 3),
            ("resnet56-k3", 6, 3),
        ] {
            let spec: ModelSpec = name.parse().unwrap();
            assert_eq!(spec.family, Family::Cifar { n, convs }, "{name}");
            assert_eq!(spec.convs_per_unit(), Some(convs));
            assert_eq!(spec.shortcut, Shortcut::A);
        }
        assert_eq!(
            "resnet20-k1".parse::<ModelSpec>().unwrap().depth(),
            "resnet20-k3".parse::<ModelSpec>().unwrap().depth()
        );
    }

    #[test]
    fn every_listed_model_parses_back_to_itself() {
        let all = all_models();
        assert!(all.len() > 20);
        for spec in all {
            assert_eq!(spec.to_string().parse::<ModelSpec>().unwrap(), spec);
        }
    }
}
