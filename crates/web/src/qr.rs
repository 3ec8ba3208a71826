//! The invite QR code as an inline SVG: one path of dark modules on a white
//! square with the four-module quiet zone scanners need, scaled by CSS.

use qrcode::{Color, EcLevel, QrCode};

use crate::escape::escape;

/// `text` as a QR code (error correction M, byte mode as needed), drawn as
/// an `<svg>` element whose viewBox is the code plus its quiet zone; `label`
/// becomes its accessible name. `None` when the text does not fit a QR code.
pub fn qr_svg(text: &str, label: &str) -> Option<String> {
    const QUIET: usize = 4;
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET;
    let mut path = String::with_capacity(colors.len() * 6);
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (i % width + QUIET, i / width + QUIET);
            path.push_str(&format!("M{x} {y}h1v1h-1z"));
        }
    }
    Some(format!(
        "<svg class=\"qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"{label}\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{path}\"/></svg>",
        label = escape(label),
    ))
}
