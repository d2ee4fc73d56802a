//! The one font every figure is drawn with: Noto Sans, compiled in, so that a machine without
//! system fonts or fontconfig draws the same text as a desktop.

use std::sync::Once;

use plotters::style::FontStyle;

/// The family name figures ask plotters for.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, notosans::REGULAR_TTF),
            (FontStyle::Bold, notosans::BOLD_TTF),
            (FontStyle::Italic, notosans::ITALIC_TTF),
        ] {
            // The bytes are a known-good TrueType file compiled into the binary.
            if plotters::style::register_font(FAMILY, style, bytes).is_err() {
                panic!(
                    "the bundled Noto Sans ({}) is not a valid font",
                    style.as_str()
                );
            }
        }
    });
}
